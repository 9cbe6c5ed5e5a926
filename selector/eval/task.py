"""The lmms-eval task `entropy_select_synthetic`: the clips of `selector.eval.synthetic`, asked as four-option
questions, scored by the option letter of the answer (accuracy). The task YAML (in `tasks/`, the folder that
`python -m selector.eval tasks-path` prints) names the functions below."""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict
from lmms_eval.api.task import ConfigurableMessagesTask

from . import synthetic


class SyntheticTask(ConfigurableMessagesTask):
    """A chat task whose documents are made here (written to disk on first use) instead of downloaded."""

    def __init__(self, *args: Any, config: dict | None = None, **kwargs: Any) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(*args, config=config, **kwargs)

    def download(self, dataset_kwargs: dict | None = None) -> None:
        split = self.config.test_split
        self.dataset = DatasetDict({split: Dataset.from_list(synthetic.docs())})
        self.dataset_no_image = self.dataset.copy()


def doc_to_messages(doc: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "video", "url": doc["video"]},
                                         {"type": "text", "text": synthetic.prompt(doc)}]}]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return synthetic.prompt(doc)


def doc_to_visual(doc: dict) -> list[str]:
    return [doc["video"]]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """accuracy: 1 when the answer's option letter is the right one; answered: 1 when it names any option."""
    letter = synthetic.parse_letter(results[0] if results else "")
    return {"accuracy": float(letter == doc["answer"]), "answered": float(letter is not None)}
