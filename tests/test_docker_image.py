"""The production image holds the server only: no demo, no examples, no SDK fakes, and nothing that
turns the demo on. These read docker/Dockerfile and the compose files; `make compose-test`
(docker/compose_test.sh) builds and runs them for real."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from tests.factories import ROOT

DOCKER = ROOT / "docker"
# Development-only parts of the tree (the demo app creates a demo/demo superuser).
NOT_IN_THE_IMAGE = ("demo", "examples", "sdk/testing", "sdk/tests", "tests", "bench", "requirements-dev.txt")
SERVER = ("manage.py", "requirements.txt", "config", "tracer", "reports", "dashboard", "sdk/octotrace")


def instructions(text: str) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(words[0].upper(), words[1:]) for words in (line.split() for line in joined.splitlines()) if words]


def copied_sources(text: str) -> list[PurePosixPath]:
    sources = []
    for instruction, args in instructions(text):
        if instruction in {"COPY", "ADD"}:
            paths = [a for a in args if not a.startswith("--")]
            sources += [PurePosixPath(p.rstrip("/") or ".") for p in paths[:-1]]  # the last is the destination
    return sources


def overlaps(a: PurePosixPath, b: PurePosixPath) -> bool:
    """Copying `a` copies `b`, or `a` is part of `b`."""
    return str(a) == "." or a == b or a in b.parents or b in a.parents


def test_the_image_copies_the_server_and_no_demo_examples_or_sdk_fakes() -> None:
    sources = copied_sources((DOCKER / "Dockerfile").read_text())
    for part in NOT_IN_THE_IMAGE:
        assert not [s for s in sources if overlaps(s, PurePosixPath(part))], f"{part} is copied into the image"
    assert {PurePosixPath(p) for p in SERVER} <= set(sources)


def test_the_image_and_compose_never_turn_local_development_or_the_demo_on() -> None:
    for name in ("Dockerfile", "compose.yaml"):
        text = (DOCKER / name).read_text()
        assert "OCTOTRACE_LOCAL_DEV" not in text and "OCTOTRACE_DEMO" not in text, name


def test_the_images_requirements_install_no_fakes_and_no_openai_client() -> None:
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert "-e ./sdk" in requirements
    assert not [r for r in requirements if "testing" in r or "requirements-dev" in r or r.startswith("openai")]


def test_the_parser_sees_a_whole_tree_copy_as_copying_the_demo() -> None:
    sources = copied_sources("FROM python\n# COPY demo ./demo\nCOPY --chown=1:1 \\\n  . /app\nCOPY sdk ./sdk\n")
    assert sources == [PurePosixPath("."), PurePosixPath("sdk")]
    assert overlaps(sources[0], PurePosixPath("demo")) and overlaps(sources[1], PurePosixPath("sdk/testing"))
    assert not overlaps(PurePosixPath("sdk/octotrace"), PurePosixPath("sdk/testing"))


def service_blocks(text: str) -> dict[str, str]:
    """The text of each service under `services:` of a compose file (two-space indented keys)."""
    services = re.split(r"\n(?=\S)", text.split("\nservices:\n", 1)[1], maxsplit=1)[0]
    parts = re.split(r"^  ([a-z][\w-]*):[ \t]*$", services, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_base_image_is_a_build_argument_that_defaults_to_python_3_11_slim() -> None:
    steps = instructions((DOCKER / "Dockerfile").read_text())
    assert steps[0] == ("ARG", ["BASE_IMAGE=python:3.11-slim"])
    assert steps[1] == ("FROM", ["${BASE_IMAGE}"])


def test_postgres_and_redis_publish_no_port_on_the_host() -> None:
    for name in ("compose.yaml", "compose.local.yaml"):
        blocks = service_blocks((DOCKER / name).read_text())
        assert {"postgres", "redis"} <= set(blocks), name
        assert not [s for s in ("postgres", "redis") if "ports:" in blocks[s]], name
    assert "ports:" in service_blocks((DOCKER / "compose.yaml").read_text())["web"]
