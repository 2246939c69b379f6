"""The HoneyHive SDK user of the web UI's story (tests/ui/test_story.py), run unmodified in
a process of its own (its tracer instruments the whole process it runs in).

``python _story_sdk.py trace``: ``HoneyHiveTracer.init`` and nested ``@trace`` functions,
the innermost an LLM call whose messages ``enrich_span`` records (``chat_history`` in, the
assistant's message out), the session enriched with a metadata value.
``python _story_sdk.py evaluate <run name> <baseline|candidate>``: ``evaluate()`` over the
same in-code dataset (the same datapoint ids in every run), the candidate's function
answering one more question right than the baseline's.

The server and key come from ``HH_API_URL`` and ``HH_API_KEY``; the last line on stdout is
a JSON report.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

warnings.simplefilter("ignore")

URL, KEY = os.environ["HH_API_URL"], os.environ["HH_API_KEY"]
SESSION_NAME = os.environ.get("STORY_SESSION_NAME", "story-support-session")
QUESTION = os.environ.get("STORY_QUESTION", "Can I return a parcel after thirty days?")
ANSWER = "Yes: returns are accepted for sixty days."
SYSTEM = "You are a concise support agent."
#: The in-code dataset both runs use: the capital of each country.
DATASET = [
    {"inputs": {"country": "France"}, "ground_truth": {"capital": "Paris"}},
    {"inputs": {"country": "Germany"}, "ground_truth": {"capital": "Berlin"}},
    {"inputs": {"country": "Italy"}, "ground_truth": {"capital": "Rome"}},
]
#: What each run's function answers.
ANSWERS = {
    "baseline": {"France": "Lyon", "Germany": "Berlin", "Italy": "Milan"},
    "candidate": {"France": "Paris", "Germany": "Berlin", "Italy": "Milan"},
}
report: dict[str, Any] = {}


def trace_session() -> None:
    from honeyhive import HoneyHiveTracer, enrich_span, trace

    tracer = HoneyHiveTracer.init(api_key=KEY, server_url=URL, project="story",
                                  source="story-sdk", session_name=SESSION_NAME)

    @trace(event_type="tool", event_name="lookup-policy")
    def lookup_policy(topic: str) -> dict[str, Any]:
        return {"topic": topic, "days": 60}

    @trace(event_type="model", event_name="chat-completion")
    def chat_completion(question: str, policy: dict[str, Any]) -> str:
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question}]
        enrich_span(inputs={"chat_history": messages},
                    outputs={"role": "assistant", "content": ANSWER},
                    config={"model": "gpt-4o-mini", "provider": "openai"},
                    metrics={"prompt_tokens": 21, "completion_tokens": 9})
        return ANSWER

    @trace(event_type="chain", event_name="answer-question")
    def answer_question(question: str) -> str:
        return chat_completion(question, lookup_policy("returns"))

    answer = answer_question(QUESTION)
    tracer.enrich_session(metadata={"customer_tier": "gold", "channel": "chat"},
                          outputs={"answer": answer})
    tracer.force_flush()
    report.update(session_id=tracer.session_id, answer=answer)
    tracer.shutdown()


def run_evaluation(name: str, variant: str) -> None:
    from honeyhive import evaluate, trace

    answers = ANSWERS[variant]

    def capital_of(datapoint: dict[str, Any]) -> dict[str, Any]:
        @trace(event_type="model", event_name="ask-capital")
        def ask(country: str) -> str:
            return answers[country]

        return {"capital": ask(datapoint["inputs"]["country"])}

    def exact_match(outputs: dict[str, Any], inputs: dict[str, Any],
                    ground_truth: dict[str, Any]) -> float:
        return float(outputs["capital"] == ground_truth["capital"])

    result = evaluate(function=capital_of, dataset=DATASET, evaluators=[exact_match],
                      api_key=KEY, server_url=URL, name=name, max_workers=1,
                      print_results=False)
    report.update(run_id=result.run_id, status=result.status)


if __name__ == "__main__":
    if sys.argv[1] == "trace":
        trace_session()
    else:
        run_evaluation(sys.argv[2], sys.argv[3])
    print(json.dumps(report, default=str))
