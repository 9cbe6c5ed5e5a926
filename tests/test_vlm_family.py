"""A VLM family is one module with a Family subclass and one registry row: a fake family registered that way shows
up in every place that offers families (load_vlm's message, the app's model menu, the lmms-eval manifest and
models, python -m selector.eval tiny-model --family, python -m selector.bench_vlm --family)."""

from __future__ import annotations

import json

import pytest

from selector.vlm import FAMILIES, VLMError, known_vlms, load_vlm
from selector.vlm.llava_onevision import LlavaOnevision


class FakeVL(LlavaOnevision):
    model_type = "fake_vl"
    label = "Fake-VL"
    hub_ids = ("org/fake-vl-1b",)
    eval_class = "EntropySelectFakeVL"


@pytest.fixture
def fake(monkeypatch):
    from selector.bench.models import BUILDERS

    monkeypatch.setitem(FAMILIES, "fake_vl", FakeVL())
    monkeypatch.setitem(BUILDERS, "fake_vl", BUILDERS["llava_onevision"])  # a random-weight builder for tests
    yield FAMILIES["fake_vl"]


def test_the_registry_holds_the_three_families_with_their_stock_classes():
    import transformers

    assert {"llava_onevision", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"} <= set(FAMILIES)
    for family in FAMILIES.values():
        assert hasattr(transformers, family.class_name), family.class_name
    assert {"Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"} <= set(known_vlms())


def test_a_registered_family_is_offered_everywhere(fake, tmp_path, capsys):
    from selector.app.settings import Settings
    from selector.app.ui import Explorer
    from selector.bench.vlm import main as bench_main
    from selector.eval.__main__ import main as eval_main
    from selector.eval.manifest import models

    # load_vlm names it among the families it drives
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(VLMError, match="Fake-VL"):
        load_vlm(str(tmp_path / "bert"), device="cpu")
    # the app's model menu and allowlist
    e = Explorer(settings=Settings())
    assert "org/fake-vl-1b" in [ident for _, ident in e.model_choices()]
    # the lmms-eval manifest and the class it names
    assert models()["entropy_select_fake_vl"] == "selector.eval.models.EntropySelectFakeVL"
    from selector.eval import models as eval_models

    cls = eval_models.EntropySelectFakeVL
    assert cls.family == "fake_vl" and cls.model_id == "entropy_select_fake_vl"
    # the tiny-model command and the benchmark take it by name
    assert eval_main(["tiny-model", str(tmp_path / "tiny"), "--family", "fake_vl"]) in (0, None)
    assert (tmp_path / "tiny" / "config.json").exists()
    assert bench_main(["--tiny", "--family", "fake_vl", "--frames", "4", "--repeats", "1", "--device", "cpu"]) \
        in (0, None)
    assert "tiny Fake-VL" in capsys.readouterr().out


def test_families_without_a_builder_are_refused_by_the_builders(monkeypatch):
    from selector.bench.models import BUILDERS, build
    from selector.vlm.family import Family

    class NoBuilder(Family):
        model_type, label = "no_builder_vl", "NoBuilder-VL"

    monkeypatch.setitem(FAMILIES, "no_builder_vl", NoBuilder())
    assert "no_builder_vl" not in BUILDERS
    with pytest.raises(ValueError, match="no random-weight builder for the family 'no_builder_vl'"):
        build("/nonexistent", family="no_builder_vl")
