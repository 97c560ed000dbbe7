"""octotrace.set_success: the run outcome the server's ROI report reads (octotrace.success)."""

from __future__ import annotations

import pytest

import octotrace


def test_it_marks_the_current_workflow_span(exporter) -> None:
    @octotrace.workflow
    def research() -> None:
        octotrace.set_success(False)

    research()
    (span,) = exporter.get_finished_spans()
    assert span.attributes["octotrace.success"] is False


def test_the_last_call_wins_and_true_is_the_default(exporter) -> None:
    with octotrace.workflow("triage"):
        octotrace.set_success(False)
        octotrace.set_success()
    (span,) = exporter.get_finished_spans()
    assert span.attributes["octotrace.success"] is True


def test_it_takes_a_boolean_only(exporter) -> None:
    with pytest.raises(TypeError, match="True or False"):
        octotrace.set_success("yes")


def test_outside_any_span_it_does_nothing(exporter) -> None:
    octotrace.set_success(True)
    assert exporter.get_finished_spans() == ()
