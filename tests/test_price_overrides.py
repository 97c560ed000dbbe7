"""Project price overrides through their services (tracer/pricing.py): one validation, shared with
the catalog that `syncprices` loads, and re-pricing enqueued once the change is committed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction

from tests.factories import price
from tracer.celery import app as celery_app
from tracer.models import ModelPrice
from tracer.pricing import (
    OVERRIDE_EXISTS,
    REPRICE_TASK,
    PriceInvalid,
    price_clean,
    price_override_create,
    price_override_delete,
)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list]]:
    """The tasks handed to the broker (under `commit()`: when the transaction commits)."""
    messages: list[tuple[str, list]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args, countdown=None: messages.append((name, args)))
    return messages


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """A block whose on-commit callbacks run at its end, as if its transaction committed there."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def create(project, **fields: Any) -> ModelPrice:
    return price_override_create(
        project=project, **{"model_pattern": "acme/m-1", "input": "1", "output": "2", **fields}
    )


def refused(project, **fields: Any) -> dict[str, list[str]]:
    with pytest.raises(PriceInvalid) as caught:
        create(project, **fields)
    assert not ModelPrice.objects.filter(project=project).exists()
    return caught.value.errors


# --- Creating --------------------------------------------------------------------------------


def test_it_stores_an_override_normalized_and_reprices_the_project(project_a, sent, commit) -> None:
    with commit():
        override = create(
            project_a,
            model_pattern="  ACME/Mystery-*  ",
            provider=" NIM ",
            input="1.5",
            cached_input="0.25",
            output="2",
            note=" negotiated ",
        )
        assert sent == []  # not before the commit: the worker would not find the row

    stored = ModelPrice.objects.get(project=project_a)
    assert stored.pk == override.pk
    assert (stored.model_pattern, stored.provider, stored.note) == ("acme/mystery-*", "nim", "negotiated")
    assert (stored.input, stored.cached_input, stored.cache_write, stored.output, stored.reasoning) == (
        Decimal("1.5"),
        Decimal("0.25"),
        None,
        Decimal("2"),
        None,
    )
    # No date typed: the price applies to every stored call.
    assert stored.valid_from == date(2000, 1, 1)
    assert stored.source == "project override" and stored.source_date is None
    assert sent == [(REPRICE_TASK, [project_a.pk])]


def test_it_takes_decimals_ints_and_dates_as_well_as_text(project_a) -> None:
    override = create(project_a, input=Decimal("0.5"), output=3, reasoning="", valid_from=date(2026, 3, 1))
    assert (override.input, override.output, override.reasoning) == (Decimal("0.5"), Decimal("3"), None)
    assert override.valid_from == date(2026, 3, 1)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("0", Decimal("0")),
        ("-0", Decimal("0")),
        ("999999.999999", Decimal("999999.999999")),
        ("0.000001", Decimal("0.000001")),
        # Zeros past the sixth decimal change nothing: stored exactly.
        ("1.50000000", Decimal("1.5")),
        ("1e2", Decimal("100")),
    ],
)
def test_it_accepts_every_price_the_column_stores_exactly(project_a, value: str, stored: Decimal) -> None:
    create(project_a, input=value)
    assert ModelPrice.objects.get(project=project_a).input == stored


@pytest.mark.parametrize("field", ["input", "cached_input", "cache_write", "output", "reasoning"])
@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("-1", "is not a non-negative number below 1,000,000"),
        ("-0.000001", "is not a non-negative number below 1,000,000"),
        ("NaN", "is not a non-negative number below 1,000,000"),
        ("Infinity", "is not a non-negative number below 1,000,000"),
        ("ten", "is not a non-negative number below 1,000,000"),
        ("1000000", "is not a non-negative number below 1,000,000"),
        ("12345678901", "is not a non-negative number below 1,000,000"),
        ("0.0000001", "has more than 6 decimal places"),
        ("1.1234567", "has more than 6 decimal places"),
    ],
    ids=[
        "negative",
        "tiny-negative",
        "nan",
        "infinity",
        "text",
        "a-million",
        "too-many-digits",
        "7-places",
        "7-places-b",
    ],
)
def test_it_refuses_a_price_the_column_cannot_hold(
    project_a, sent, commit, field: str, value: str, reason: str
) -> None:
    with commit():
        errors = refused(project_a, **{field: value})

    label = field.replace("_", " ")
    assert errors == {field: [f"The {label} price {value!r} {reason}."]}
    assert sent == []


@pytest.mark.parametrize("field", ["input", "output"])
@pytest.mark.parametrize("value", ["", "   ", None])
def test_it_requires_the_input_and_output_prices(project_a, field: str, value) -> None:
    assert refused(project_a, **{field: value}) == {field: [f"The {field} price is required."]}


def test_a_true_is_not_a_price(project_a) -> None:
    assert refused(project_a, input=True) == {
        "input": ["The input price True is not a non-negative number below 1,000,000."]
    }


@pytest.mark.parametrize(
    ("pattern", "errors"),
    [
        ("", {"model_pattern": ["Model pattern is required."]}),
        ("   ", {"model_pattern": ["Model pattern is required."]}),
        ("m" * 201, {"model_pattern": ["Model pattern is longer than 200 characters."]}),
    ],
    ids=["empty", "blank", "201-characters"],
)
def test_it_refuses_a_missing_or_too_long_pattern(project_a, pattern: str, errors: dict) -> None:
    assert refused(project_a, model_pattern=pattern) == errors


def test_it_accepts_a_pattern_and_a_provider_as_long_as_their_columns(project_a) -> None:
    override = create(project_a, model_pattern="m" * 200, provider="p" * 100)
    assert len(override.model_pattern) == 200 and len(override.provider) == 100


def test_it_refuses_a_provider_longer_than_its_column(project_a) -> None:
    assert refused(project_a, provider="p" * 101) == {"provider": ["Provider is longer than 100 characters."]}


@pytest.mark.parametrize("valid_from", ["soon", "2026-02-30", "2026-13-01", "01/02/2026", "2026-01-01T10:00"])
def test_it_refuses_a_date_that_is_not_one(project_a, valid_from: str) -> None:
    assert refused(project_a, valid_from=valid_from) == {"valid_from": ["Valid from must be a date (YYYY-MM-DD)."]}


def test_it_gives_every_reason_at_once_in_the_order_of_the_form(project_a) -> None:
    with pytest.raises(PriceInvalid) as caught:
        create(project_a, model_pattern="", input="-1", output="", reasoning="x", valid_from="soon")

    assert list(caught.value.errors) == ["model_pattern", "input", "output", "reasoning", "valid_from"]
    assert caught.value.messages == [
        "Model pattern is required.",
        "The input price '-1' is not a non-negative number below 1,000,000.",
        "The output price is required.",
        "The reasoning price 'x' is not a non-negative number below 1,000,000.",
        "Valid from must be a date (YYYY-MM-DD).",
    ]
    assert str(caught.value).startswith("model_pattern: Model pattern is required.; input: ")


def test_it_refuses_a_second_override_for_the_same_provider_pattern_and_date(project_a, sent, commit) -> None:
    with commit():
        create(project_a, valid_from="2026-01-01")
    with commit(), pytest.raises(PriceInvalid) as caught:
        # Same key once normalized.
        create(project_a, model_pattern="ACME/M-1", input="9", valid_from=date(2026, 1, 1))

    assert caught.value.errors == {NON_FIELD_ERRORS: [OVERRIDE_EXISTS]}
    assert [p.input for p in ModelPrice.objects.filter(project=project_a)] == [Decimal("1")]
    assert sent == [(REPRICE_TASK, [project_a.pk])]  # the first one only


def test_a_duplicate_leaves_the_callers_transaction_usable(project_a) -> None:
    create(project_a)
    with transaction.atomic():
        with pytest.raises(PriceInvalid):
            create(project_a)
        create(project_a, provider="nim")
    assert ModelPrice.objects.filter(project=project_a).count() == 2


def test_another_provider_date_or_project_is_not_a_duplicate(project_a, project_b) -> None:
    create(project_a)
    create(project_a, provider="nim")
    create(project_a, valid_from="2026-06-01")
    create(project_b)
    # A catalog price with the same key is what an override is for.
    price(pattern="acme/m-1", valid_from=date(2000, 1, 1))
    create(project_a, provider="other")

    assert ModelPrice.objects.filter(project=project_a).count() == 4
    assert ModelPrice.objects.filter(project=project_b).count() == 1


# --- Deleting --------------------------------------------------------------------------------


def test_it_deletes_an_override_and_reprices_the_project(project_a, sent, commit) -> None:
    override = create(project_a)

    with commit():
        price_override_delete(project=project_a, price_id=override.pk)

    assert not ModelPrice.objects.filter(pk=override.pk).exists()
    assert sent == [(REPRICE_TASK, [project_a.pk])]


def test_it_does_not_find_another_projects_override(project_a, project_b, sent, commit) -> None:
    theirs = create(project_b)

    with commit(), pytest.raises(ModelPrice.DoesNotExist):
        price_override_delete(project=project_a, price_id=theirs.pk)

    assert ModelPrice.objects.filter(pk=theirs.pk).exists()
    assert sent == []


def test_it_does_not_find_a_catalog_price_or_an_unknown_id(project_a, sent, commit) -> None:
    default = price()

    for price_id in (default.pk, default.pk + 1000):
        with commit(), pytest.raises(ModelPrice.DoesNotExist):
            price_override_delete(project=project_a, price_id=price_id)

    assert ModelPrice.objects.filter(pk=default.pk).exists()
    assert sent == []


# --- The rules are the catalog's --------------------------------------------------------------


def test_the_catalog_rules_are_the_override_rules(db) -> None:
    """`syncprices` checks each entry with the same function: a catalog entry names no default date."""
    entry = {"model_pattern": "acme/m-1", "input": "1", "output": "2"}

    with pytest.raises(PriceInvalid) as caught:
        price_clean(**entry, valid_from=None, source_date="someday")
    assert caught.value.errors == {
        "valid_from": ["Valid from is required."],
        "source_date": ["Source date must be a date (YYYY-MM-DD)."],
    }

    values = price_clean(**entry, valid_from="2026-01-01", source_date="2026-11-26")
    assert values["valid_from"] == date(2026, 1, 1) and values["source_date"] == date(2026, 11, 26)


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"input": 0.1}, None),
        ({"input": 12}, None),
        ({"input": [1]}, {"input": ["The input price [1] is not a non-negative number below 1,000,000."]}),
        ({"model_pattern": 7}, {"model_pattern": ["Model pattern must be text, not 7."]}),
        ({"provider": None}, None),
        ({"valid_from": 20260101}, {"valid_from": ["Valid from must be a date (YYYY-MM-DD)."]}),
    ],
    ids=["json-float", "json-int", "json-list", "number-pattern", "null-provider", "number-date"],
)
def test_it_checks_the_types_a_json_catalog_may_hold(db, fields: dict, errors: dict | None) -> None:
    entry = {"model_pattern": "acme/m-1", "input": "1", "output": "2", "valid_from": "2026-01-01", **fields}
    if errors is None:
        values = price_clean(**entry)
        assert values["input"] == Decimal(str(entry["input"])) and values["provider"] == ""
    else:
        with pytest.raises(PriceInvalid) as caught:
            price_clean(**entry)
        assert caught.value.errors == errors
