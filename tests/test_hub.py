"""Offline, a hub encoder or model is refused before any hub call, with one message that says how to provide it,
and the app's allowlist accepts what that message tells the operator to do."""

from __future__ import annotations

import socket

import pytest

from selector import hub
from selector.app.settings import Settings
from selector.app.ui import Explorer
from selector.bench.models import build
from selector.config import SelectorError
from selector.encoders import EncoderError, load_encoder
from selector.vlm import VLMError, load_vlm


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub._state.clear()
    yield
    hub._state.clear()


@pytest.fixture
def no_hub_calls(monkeypatch):
    """Any from_pretrained reaching for the hub fails the test."""
    import transformers

    def refuse(*a, **k):
        raise AssertionError(f"a hub call was made: from_pretrained{a}")

    for name in ("AutoConfig", "AutoProcessor", "AutoImageProcessor", "SiglipVisionModel"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)


def test_offline_hub_encoder_is_refused_before_any_hub_call(offline, no_hub_calls):
    with pytest.raises(EncoderError) as e:
        load_encoder("google/siglip-so400m-patch14-384", device="cpu")
    msg = str(e.value)
    assert "comes from the Hugging Face hub" in msg and "HF_HUB_OFFLINE is set" in msg
    assert "huggingface-cli download google/siglip-so400m-patch14-384 --local-dir DIR" in msg


def test_offline_hub_model_is_refused_before_any_hub_call(offline, no_hub_calls):
    with pytest.raises(VLMError, match="The model 'Qwen/Qwen2.5-VL-3B-Instruct' comes from the Hugging Face hub"):
        load_vlm("Qwen/Qwen2.5-VL-3B-Instruct", device="cpu")


def test_probe_sees_a_listening_endpoint_and_a_closed_one(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        hub._state.clear()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert hub.reachable()
    hub._state.clear()  # the port is closed now
    assert not hub.reachable()
    assert not hub.available("no-such-org/no-such-model")
    hub._state.clear()


def test_a_local_folder_is_available_offline(offline, tmp_path):
    assert hub.available(str(tmp_path))
    assert not hub.available("no-such-org/no-such-model")


def test_app_refusal_names_the_allowlist_and_following_it_works(offline, tmp_path):
    folder = str(build(tmp_path / "tiny"))
    strict = Explorer(settings=Settings())
    with pytest.raises(SelectorError) as e:
        strict.allowed("model", "Qwen/Qwen2.5-VL-3B-Instruct", {"Qwen/Qwen2.5-VL-3B-Instruct"})
    assert "ENTROPY_SELECT_MODEL_ALLOWLIST=DIR" in str(e.value) and "--local-dir DIR" in str(e.value)
    with pytest.raises(SelectorError, match="ENTROPY_SELECT_MODEL_ALLOWLIST"):  # the folder, not yet listed
        strict.allowed("model", folder, {"Qwen/Qwen2.5-VL-3B-Instruct"})
    listed = Explorer(settings=Settings(extra_models=frozenset({folder})))  # what the message says to do
    assert listed.allowed("model", folder, {"Qwen/Qwen2.5-VL-3B-Instruct"}) == folder
    assert load_vlm(folder, device="cpu").family == "llava_onevision"
    open_server = Explorer(settings=Settings(allow_any_model=True))
    with pytest.raises(SelectorError) as e:
        open_server.allowed("encoder", "facebook/dinov2-small", set())
    assert "ALLOWLIST" not in str(e.value)  # no allowlist on that server: the message does not mention one


def test_menu_marks_which_encoders_load_now(offline):
    labels = dict((v, k) for k, v in Explorer(settings=Settings()).encoder_choices())
    from selector.encoders import cpu_precision

    # the offline encoders say the precision they run in on a CPU (bf16 where the CPU has bf16 instructions)
    assert labels["dinov2-s"] == f"dinov2-s (offline, {cpu_precision(name='dinov2-s')} on a CPU)"
    assert labels["efficientnet-lite0"] == "efficientnet-lite0 (offline, fp32 on a CPU)"
    assert labels["google/siglip-so400m-patch14-384"].endswith("(needs the hub: unavailable now)")
    assert "not reachable" in Explorer(settings=Settings()).model_availability()
