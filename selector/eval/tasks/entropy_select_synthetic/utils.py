# lmms-eval resolves the YAML's `!function utils.NAME` in this file; the code lives in selector.eval.task.
from selector.eval.task import SyntheticTask, doc_to_messages, doc_to_text, doc_to_visual, process_results

__all__ = ["SyntheticTask", "doc_to_messages", "doc_to_text", "doc_to_visual", "process_results"]
