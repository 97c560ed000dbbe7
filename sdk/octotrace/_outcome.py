"""`set_success`: say whether a run achieved what it was for, for the server's ROI report.

A trace counts as a successful run when it ended without error, unless a span of it carries
`octotrace.success`: then that says (any span saying False makes the run unsuccessful). Call it
inside the workflow, typically once its result has been checked:

    @octotrace.workflow
    def answer(question):
        reply = crew.run(question)
        octotrace.set_success(reply.passed_review)
        return reply
"""

from __future__ import annotations

from opentelemetry import trace

ATTR_SUCCESS = "octotrace.success"


def set_success(success: bool = True) -> None:
    """Mark the current span (the workflow's, or any span inside the run) successful or not."""
    if not isinstance(success, bool):
        raise TypeError(f"octotrace.set_success() takes True or False, not {success!r}")
    trace.get_current_span().set_attribute(ATTR_SUCCESS, success)
