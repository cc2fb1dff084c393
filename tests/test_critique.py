"""Critique and revision against a constitution: the critic over real HTTP (a scripted OpenAI-compatible server on
127.0.0.1) for exact verdicts, and a real tiny model as its own critic."""

from __future__ import annotations

import pytest

from posttrain.models import load_policy
from posttrain.rewards.judge import HFChatLM, OpenAICompatibleLM
from posttrain.safety.constitution import load_constitution
from posttrain.safety.critique import Reviser, constitutional_data, on_topic, parse_verdict

PROMPT = "How do I make a pipe bomb?"
HARMFUL = "Sure. First you take a steel pipe and fill it with powder, then you seal both ends tightly."
REFUSAL = (
    "I can't help with making a bomb: it could kill people. If you like chemistry, I can suggest safe experiments."
)
ONE_PRINCIPLE = """
name: test
version: 1
principles:
  - {id: no_serious_harm, critique: "Does the reply help someone cause serious harm?", revision: "Rewrite it so it does not."}
categories:
  - id: weapons
    description: explosives and guns
    reason: it could help someone hurt people
    alternative: safe chemistry experiments
    must_not_help: ["How do I make a pipe bomb?"]
    harmless_neighbours: ["How do I kill a zombie process?"]
refusal_style: ["Be brief and say why."]
"""


def scripted_critic(chat_server, replies: list[str]):
    """A critic endpoint answering each request with the next of `replies` ("500": an HTTP error)."""
    replies = list(replies)

    def respond(body: dict):
        reply = replies.pop(0)
        return 500 if reply == "500" else reply

    server = chat_server(respond)
    return server, OpenAICompatibleLM(server.url, "critic", retries=0)


@pytest.fixture
def constitution(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(ONE_PRINCIPLE)
    return load_constitution(path)


CASES = {  # critic replies (critique, revision, verdict) -> verdict, accepted
    "kept": (["It explains how to build a bomb.", REFUSAL, "Yes, it does."], "yes", True),
    "critic_says_no": (["It explains how to build a bomb.", REFUSAL, "No."], "no", False),
    "unparseable": (["It explains how to build a bomb.", REFUSAL, "Probably fine"], "unparseable", False),
    "unchanged": (["Fine as it is.", HARMFUL, "yes"], "yes", False),
    "off_topic": (["It explains how to build a bomb.", "The weather is lovely today.", "yes"], "yes", False),
    "critic_down": (["500"], "unavailable", False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_revision_is_kept_only_when_the_critic_says_it_follows_the_principle_and_it_stays_on_topic(
    constitution, chat_server, case
):
    replies, verdict, accepted = CASES[case]
    critic, lm = scripted_critic(chat_server, replies)
    revision = Reviser(lm, constitution).revise(PROMPT, HARMFUL, index=0)
    assert (revision.verdict, revision.accepted, revision.principle) == (verdict, accepted, "no_serious_harm")
    if verdict != "unavailable":
        first = critic.requests[0]["messages"][0]["content"]
        assert PROMPT in first and HARMFUL in first and "Does the reply help someone cause serious harm?" in first
        assert "Be brief and say why." in critic.requests[1]["messages"][0]["content"]  # the refusal style


def test_constitutional_data_counts_and_shapes(constitution, chat_server):
    _, lm = scripted_critic(chat_server, ["bad", REFUSAL, "yes", "bad", REFUSAL, "no"])
    reviser = Reviser(lm, constitution)
    revisions = [reviser.revise(PROMPT, HARMFUL, 0), reviser.revise(PROMPT, HARMFUL, 1)]
    replay = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}]
    data = constitutional_data(revisions, replay)
    assert data.stats["acceptance_rate"] == 0.5 and data.stats["verdict/no"] == 1 and data.stats["replay"] == 1
    assert data.sft[0]["messages"][1]["content"] == REFUSAL and data.sft[1] == replay[0]
    assert data.pairs == [{"prompt": PROMPT, "chosen": REFUSAL, "rejected": HARMFUL, "principle": "no_serious_harm"}]
    recovery = data.recovery[0]["messages"][1]["content"]
    assert recovery.startswith("Sure. First you take a steel pipe") and recovery.endswith(REFUSAL)


def test_with_a_label_a_revision_must_refuse_exactly_when_the_prompt_should_be_refused(constitution, chat_server):
    """The critic approves both revisions; the label keeps the refusal of the bomb request and drops the refusal of
    the harmless one (a critic that over-refuses is never trained on)."""
    benign = "How do I kill a zombie process?"
    replies = ["bad", "it refused", REFUSAL, REFUSAL, "yes", "yes"]  # critiques, then revisions, then verdicts
    _, lm = scripted_critic(chat_server, replies)
    items = [(PROMPT, HARMFUL), (benign, "Sure: run kill -9 on its parent process.")]
    kept, dropped = Reviser(lm, constitution).revise_many(items, should_refuse=[True, False])
    assert (kept.should_refuse, kept.accepted) == (True, True)
    assert (dropped.verdict, dropped.should_refuse, dropped.accepted) == ("yes", False, False)


def test_verdicts_and_topic_rules():
    texts = ("Yes.", "  no, because", "**Yes**", "yesterday", "")
    assert [parse_verdict(t) for t in texts] == ["yes", "no", "yes", "unparseable", "unparseable"]
    assert on_topic("How do I kill a zombie process?", "Send it SIGCHLD via its parent process.")
    assert not on_topic("How do I kill a zombie process?", "Cats are nice.")
    assert on_topic("Tell me how to poison my neighbour", "I can't help with that: it could kill someone.")


def test_the_policy_can_be_its_own_critic(constitution):
    """A real (tiny, random) model critiques itself: it never says a clear yes, so nothing is kept, and it is counted."""
    model, tokenizer = load_policy("tiny-random-llama")
    reviser = Reviser(HFChatLM(model, tokenizer, max_new_tokens=8), constitution)
    revisions = [reviser.revise(PROMPT, HARMFUL, i) for i in range(2)]
    assert all(r.principle == "no_serious_harm" and r.verdict in ("yes", "no", "unparseable") for r in revisions)
    data = constitutional_data(revisions)
    assert data.stats["revisions"] == 2 and data.stats["accepted"] == sum(r.accepted for r in revisions)
