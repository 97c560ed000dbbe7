"""The SDK prices budget guards locally; its catalog and arithmetic must be the server's."""

from __future__ import annotations

import pytest

from octotrace import _prices
from tests.factories import ROOT
from tracer.pricing import PriceBook, Usage


def test_the_sdk_bundles_the_server_catalog():
    bundled = (ROOT / "sdk" / "octotrace" / "data" / "prices.json").read_bytes()
    assert bundled == (ROOT / "tracer" / "data" / "prices.json").read_bytes(), (
        "copy tracer/data/prices.json to sdk/octotrace/data/prices.json"
    )


@pytest.mark.parametrize(
    "model",
    [
        "nvidia/llama-3.1-nemotron-ultra-253b-v1",
        "nvidia/llama-3.3-nemotron-super-49b-v1.5",
        "nvidia/nemotron-3-nano-30b-a3b",
        "nvidia/nvidia-nemotron-nano-9b-v2",
        "gpt-4o-mini",
        "claude-sonnet-4-5-20250929",
    ],
)
def test_the_sdk_prices_a_call_as_the_server_does(db, model):
    usage = Usage(input_tokens=12_345, output_tokens=2_345, cached_input_tokens=4_096, reasoning_tokens=700)
    server = PriceBook(project_id=None).cost(
        provider="", model=model, start_time_unix_nano=1_795_000_000 * 10**9, usage=usage
    )
    _prices.load_bundled()
    local = _prices.cost(
        model=model,
        input_tokens=12_345,
        output_tokens=2_345,
        cached_input_tokens=4_096,
        reasoning_tokens=700,
    )
    assert server is not None and local is not None
    assert local.quantize(server) == server


def test_an_unknown_model_has_no_local_price():
    _prices.load_bundled()
    assert _prices.cost(model="acme/unknown-model", input_tokens=10, output_tokens=10) is None
