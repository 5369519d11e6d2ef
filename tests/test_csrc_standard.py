"""The extension's sources stay C++17: torch 2.11 (the GPU machine's) builds extensions as
C++17, while the torch here asks for C++20, so a C++20-only construct compiles here and in
CI and breaks the build there (it did: `std::bit_cast`, the first GPU run, 2026-11-27).
No C++17 compiler run is possible here (these torch headers need C++20), so the sources are
read for the constructs that C++17 lacks."""

import re
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parents[1] / "csrc"
SOURCES = sorted(p for p in CSRC.rglob("*") if p.suffix in {".cpp", ".cu", ".h", ".cuh"})

# C++20 headers and names, with what to use instead
CXX20_ONLY = {
    r"#include\s*<(bit|span|numbers|ranges|concepts|compare|format|source_location)>":
        "a C++20 header",
    r"\bstd::(bit_cast|span|numbers|ranges|popcount|countl_zero|countr_zero|has_single_bit|"
    r"bit_width|bit_ceil|bit_floor|midpoint|lerp|ssize|to_array|erase_if|format)\b":
        "a C++20 library name (std::memcpy replaces std::bit_cast)",
    r"<=>": "the three-way comparison",
    r"\b(consteval|constinit|co_await|co_yield|co_return)\b": "a C++20 keyword",
    r"\[\[(un)?likely\]\]": "a C++20 attribute",
    r"\brequires\s*[({]|\bconcept\s+\w+\s*=": "a constraint or concept",
}


def _code(path: Path) -> str:
    """The source without comments and string literals."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def offences(text: str, cuda: bool) -> list[str]:
    found = [f"{what}: {m.group(0)}" for pattern, what in CXX20_ONLY.items()
             for m in re.finditer(pattern, text)]
    if cuda:  # the launchers' dispatch lambdas capture by reference: a binding would be captured
        found += [f"a structured binding in a CUDA launcher (captured from C++20 on): {m.group(0)}"
                  for m in re.finditer(r"\bauto\s*&{0,2}\s*\[[^\]]*\]\s*=", text)]
    return found


def test_the_scan_finds_what_it_looks_for():
    assert offences("float f = std::bit_cast<float>(u);", cuda=False)
    assert offences("#include <bit>\n", cuda=False)
    assert offences("const auto [B, V, J] = sizes;", cuda=True)
    assert not offences("const auto [B, V, J] = sizes;", cuda=False)
    assert not offences("std::memcpy(&f, &u, sizeof f); auto x = a[i];", cuda=True)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CSRC)))
def test_source_is_cxx17(path):
    assert SOURCES
    assert offences(_code(path), cuda=path.suffix in {".cu", ".cuh"}) == []
