"""The public instruction-tuning sets the harness knows by name (the `public` recipe's `set`, and
`forgetbench profile --data`): each with its Hugging Face Hub id, split and an adapter for that set's
real schema; the four mirrored in the local data directory also read the mirror's files."""
from __future__ import annotations

from typing import Any

from harness.data import DataSource, Message, alpaca_messages, chat_messages, sharegpt_messages


def dolly_messages(row: dict) -> list:
    """Dolly: the mirror's Alpaca rendering, or the Hub's instruction/context/response."""
    if "response" in row:
        row = {"instruction": row["instruction"], "input": row.get("context", ""), "output": row["response"]}
    return alpaca_messages(row)


def lima_messages(row: dict[str, Any]) -> list[Message]:
    """LIMA: the mirror's Alpaca rendering, or the Hub's `conversations: [str, ...]` (user first,
    then alternating; a few rows are multi-turn)."""
    if "conversations" not in row:
        return alpaca_messages(row)
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": text}
            for i, text in enumerate(row["conversations"])]


def wildchat_messages(row: dict[str, Any]) -> list[Message]:
    """WildChat: `conversation: [{role, content, language, toxic, turn_identifier, ...}]`."""
    return chat_messages({"messages": row["conversation"]})


def genqa_messages(row: dict[str, Any]) -> list[Message]:
    """GenQA: `text: [{role, content}]` (the `prompt` column is the generator's meta-prompt, not a turn)."""
    return chat_messages({"messages": row["text"]})


_GENQA_SPLITS = "+".join(["academic", "code", "dialog", "general", "math", "mmlu", "multiple_choice", "task", "writing"])

PUBLIC_SETS: dict[str, DataSource] = {
    "alpaca": DataSource("alpaca", alpaca_messages, "rehearsal/alpaca/alpaca_2k.json", "tatsu-lab/alpaca"),
    "dolly": DataSource("dolly", dolly_messages, "rehearsal/dolly/dolly_2k.json", "databricks/databricks-dolly-15k"),
    "lima": DataSource("lima", lima_messages, "rehearsal/lima/lima_train.json", "GAIR/lima"),
    # the ShareGPT repo holds raw JSON files of different schemas, not one dataset: name the V3 file
    "sharegpt": DataSource("sharegpt", sharegpt_messages, "rehearsal/sharegpt/sharegpt_v3_first5000.json",
                           "anon8231489123/ShareGPT_Vicuna_unfiltered",
                           hub_data_files="ShareGPT_V3_unfiltered_cleaned_split.json"),
    # Hub only (no mirror file): their adapters are tested on fixtures of the real schema
    "ultrachat": DataSource("ultrachat", chat_messages, None, "HuggingFaceH4/ultrachat_200k", hub_split="train_sft"),
    "openhermes": DataSource("openhermes", alpaca_messages, None, "teknium/openhermes"),
    "openhermes-2.5": DataSource("openhermes-2.5", sharegpt_messages, None, "teknium/OpenHermes-2.5"),
    "wildchat": DataSource("wildchat", wildchat_messages, None, "allenai/WildChat-1M"),
    "evol-instruct": DataSource("evol-instruct", sharegpt_messages, None, "WizardLMTeam/WizardLM_evol_instruct_V2_196k"),
    "genqa": DataSource("genqa", genqa_messages, None, "tomg-group-umd/GenQA", hub_split=_GENQA_SPLITS),
    "tulu-v2": DataSource("tulu-v2", chat_messages, None, "allenai/tulu-v2-sft-mixture"),
}
