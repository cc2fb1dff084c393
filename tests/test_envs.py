"""Environments: the calculator, tool-call parsing, the tool environment's rules and budgets, the ids between turns
for three chat templates, and multi-turn episodes on a real (tiny) model through the rollout engine."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch

from posttrain.envs import Episode, Step
from posttrain.envs.calculator import calculator
from posttrain.envs.episodes import run_groups
from posttrain.envs.tokens import bridge_ids, end_of_turn_text, stream_differences
from posttrain.envs.tools import TOOLS, ToolBudget, ToolEnv, parse_calls
from posttrain.envs.verifier import VerifierEnv
from posttrain.logprobs import token_logprobs
from posttrain.models import load_tokenizer
from posttrain.packing import pack
from posttrain.render import RenderedSequence, render_prompt, render_text, tokenize
from posttrain.rewards.shaped import ShapedReward, Shaping
from posttrain.rollout import SamplingParams, Turn
from posttrain.rollout.engine import RolloutEngine
from posttrain.rollout.hf import HFSampler
from posttrain.rounds import sample_groups
from posttrain.tasks.arithmetic import arithmetic_tasks
from posttrain.types import Message, RLTask

TRL_TEMPLATES = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates"


@pytest.mark.parametrize(
    ("expression", "reply"),
    [("(12 + 7) * 3", "57"), ("10 / 4", "2.5"), ("10 / 2", "5"), ("2 ** 10 - -3", "1027"), ("7 // 2 + 7 % 2", "4")],
)
def test_calculator_evaluates_arithmetic(expression, reply):
    assert calculator(expression) == reply


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('id')", "x + 1", "9 ** 9 ** 9", "1 / 0", "len('abc')", "(1).__class__", "1 <", "2 < 3"],
)
def test_calculator_refuses_everything_but_arithmetic(expression):
    assert calculator(expression).startswith("error:")


def test_parse_calls_reads_both_formats_and_reports_malformed_ones():
    (call,) = parse_calls(
        'Let me compute. <tool_call>{"name": "calculator", "arguments": {"expression": "1+2"}}</tool_call>'
    )
    assert (call.name, dict(call.arguments), call.error) == ("calculator", {"expression": "1+2"}, None)
    (bare,) = parse_calls('{"name": "calculator", "parameters": {"expression": "3"}}')  # Llama 3.1
    assert bare.name == "calculator" and bare.arguments == {"expression": "3"}
    assert parse_calls("The answer is \\boxed{3}.") == []
    assert "JSON" in parse_calls("<tool_call>{name: calculator}</tool_call>")[0].error
    assert "unclosed" in parse_calls('<tool_call>{"name": "calculator"')[0].error
    assert "arguments" in parse_calls('<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>')[0].error


@pytest.fixture(scope="module")
def tool_env(tiny_tokenizer):
    env = ToolEnv([TOOLS["calculator"]()], ShapedReward(Shaping()), tiny_tokenizer, ToolBudget(max_turns=3))
    yield env
    env.close()


def _turn(text: str, finish: str = "stop") -> Turn:
    return Turn((1, 2), (0.0, 0.0), text, finish)


def test_tool_env_runs_calls_reports_errors_and_scores_the_final_answer(tool_env):
    task = RLTask(prompt=[{"role": "user", "content": "What is (12 + 7) * 3?"}], verifier="math", answer="57")
    episode = tool_env.start(task)
    assert episode.messages[0].role == "system" and "calculator" in episode.messages[0].content  # no native tools
    turns = {
        "good": '<tool_call>{"name": "calculator", "arguments": {"expression": "(12 + 7) * 3"}}</tool_call>',
        "unknown": '<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>',
        "mistyped": '<tool_call>{"name": "calculator", "arguments": {"expression": 57}}</tool_call>',
        "extra": '<tool_call>{"name": "calculator", "arguments": {"expression": "1", "x": 2}}</tool_call>',
        "broken": "<tool_call>{not json</tool_call>",
    }
    episodes = [copy.deepcopy(episode) for _ in turns]
    steps = tool_env.step(episodes, [_turn(t) for t in turns.values()])
    replies = {name: step.observation[0].content for name, step in zip(turns, steps, strict=True)}
    assert replies["good"] == "57" and not any(s.done for s in steps)
    assert all(replies[k].startswith("error:") for k in ("unknown", "mistyped", "extra", "broken"))
    assert [e.metrics["tool_errors"] for e in episodes] == [0, 1, 1, 1, 1]
    assert all(s.observation[0].role == "tool" for s in steps)
    final, wrong, cut = tool_env.step([copy.deepcopy(episode) for _ in range(3)],
                                      [_turn("So \\boxed{57}."), _turn("\\boxed{56}"), _turn("<tool_call>{", "length")])  # fmt: skip
    assert (final.done, final.reward, final.info["correct"]) == (True, 1.0, 1.0)
    assert (wrong.done, wrong.reward) == (True, 0.0)
    assert (cut.done, cut.reward, cut.failure) == (True, 0.0, "truncated")


def test_tool_env_budgets_end_episodes_that_keep_calling(tool_env):
    task = RLTask(prompt=[{"role": "user", "content": "1+1?"}], verifier="math", answer="2")
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
    late = Episode(task, [], turns=2, metrics={"tool_calls": 2.0, "tool_errors": 0.0})  # the third turn is the last
    long = Episode(task, [], turns=0, tokens=2000, metrics={"tool_calls": 0.0, "tool_errors": 0.0})
    (turn_end, token_end) = tool_env.step([late, long], [_turn(call), _turn(call)])
    assert (turn_end.done, turn_end.reward, turn_end.failure) == (True, 0.0, "turn_budget")
    assert (token_end.done, token_end.failure) == (True, "token_budget")


# Each template on SmolLM2's BPE (the real Qwen2.5 and Llama 3 vocabularies are not available offline), with the
# template's special tokens added; the templates themselves are the models' own, as TRL ships them.
TEMPLATES = {
    "smollm2": (None, ()),
    "qwen2.5": ("qwen2_5.jinja", ()),
    "llama3.1": ("llama3_1.jinja", ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
}


def template_tokenizer(name: str):
    tokenizer = copy.deepcopy(load_tokenizer("smollm2-135m-instruct"))
    file, specials = TEMPLATES[name]
    if file:
        tokenizer.chat_template = (TRL_TEMPLATES / file).read_text()
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": list(specials)})
        tokenizer.eos_token, tokenizer.bos_token = "<|eot_id|>", "<|begin_of_text|>"
    return tokenizer


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_ids_between_turns_match_the_template_except_documented_boundaries(name):
    """Our stream: the rendered prompt, each turn's ids as sampled, and `bridge_ids` between them. A fresh render of
    the finished conversation may differ only at documented boundaries: after the last end-of-turn token, and where
    a generation prompt ending in whitespace (Llama 3's header) meets the reply, the same text split otherwise."""
    tokenizer = template_tokenizer(name)
    tools = (TOOLS["calculator"]().schema(),)
    eos = tokenizer.eos_token_id
    prompt = [Message("user", "What is (12 + 7) * 3? Use the calculator.")]
    replies = ['<tool_call>\n{"name": "calculator", "arguments": {"expression": "(12 + 7) * 3"}}\n</tool_call>',
               "The answer is \\boxed{57}."]  # fmt: skip
    observations = [(Message("tool", "57"),), ()]
    ours, history, turn_starts = render_prompt(tokenizer, prompt, tools), list(prompt), []
    for reply, observation in zip(replies, observations, strict=True):
        turn_starts.append(len(ours))
        ours += [*tokenize(tokenizer, reply), eos]  # what a model sampling the canonical ids would give
        history.append(Message("assistant", reply))
        if observation:
            ours += bridge_ids(tokenizer, history, observation, tools)
            history += observation
    rendered = tokenize(tokenizer, render_text(tokenizer, history, False, tools))
    text = render_text(tokenizer, history, False, tools)
    tail = text[text.rfind(end_of_turn_text(tokenizer)) + len(end_of_turn_text(tokenizer)) :]
    differences = stream_differences(tokenizer, ours, rendered)
    final_tail = [d for d in differences if d.ours == (len(ours), len(ours))]
    assert [d.rendered_text for d in final_tail] == ([tail] if tail else [])
    at_turn_starts = [d for d in differences if d not in final_tail]
    assert all(d.ours[1] in turn_starts and d.ours_text == d.rendered_text for d in at_turn_starts), differences
    expected_splits = {"smollm2": 0, "qwen2.5": 0, "llama3.1": 2}  # Llama 3's "\n\n" header end, at both turns
    assert len(at_turn_starts) == expected_splits[name]


class Countdown:
    """Task "count k" runs k turns (1 to 3): after each earlier turn the user says how many are left, so some rows
    of a wave continue while others end. The reward is 0.5 per user turn plus the last turn's sampled ids."""

    max_turns = 3

    def start(self, task):
        return Episode(task, list(task.prompt))

    def step(self, episodes, turns):
        steps = []
        for e, t in zip(episodes, turns, strict=True):
            left = int(e.task.prompt[-1].content.split()[1]) - 1 - e.turns
            steps.append(Step((Message("user", f"{left} more"),), 0.5, False) if left > 0
                         else Step((), float(len(t.token_ids)), True, {"correct": 0.0}))  # fmt: skip
        return steps

    def close(self):
        pass


@pytest.mark.parametrize("stop", [(), ("e",)])  # ("e",): turns end early, on a stop string, not the eos token
def test_multi_turn_episodes_keep_sampled_ids_and_mask_everything_else(tiny, stop):
    model, tokenizer = tiny
    model.eval()
    tasks = [RLTask(prompt=[{"role": "user", "content": f"count {k}"}], verifier="math", answer="1") for k in (3, 1, 2)]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=3, stop=stop)
    engine = RolloutEngine(model, tokenizer, batch_size=4, dtype=torch.float32)
    groups = run_groups(engine, tokenizer, Countdown(), tasks, 2, params)
    for group in groups:
        for rollout, score in zip(group.rollouts, group.scores, strict=True):
            k = int(group.task.prompt[-1].content.split()[1])
            sampled = [i for i, s in zip(rollout.token_ids, rollout.trained_mask, strict=True) if s]
            given = [i for i, s in zip(rollout.token_ids, rollout.trained_mask, strict=True) if not s]
            last_turn = len(rollout.token_ids) - (rollout.trained_mask[::-1].index(False) if given else len(sampled))
            assert score.metrics["turns"] == k and score.reward == 0.5 * (k - 1) + len(rollout.token_ids) - last_turn
            assert tokenizer.decode(given).count("more") == k - 1  # the user turns, not trained on
            assert len(sampled) == len(rollout.sampled_logprobs) and all(lp < 0 for lp in rollout.sampled_logprobs)
            # the ids a fresh render would give differ only inside sampled turns or after the final end-of-turn
            conversation = tokenize(tokenizer, render_text(tokenizer, _conversation(tokenizer, group.task, rollout),
                                                           False))  # fmt: skip
            ours = list(rollout.prompt_ids + rollout.token_ids)
            for d in stream_differences(tokenizer, ours, conversation):
                assert d.ours[0] == len(ours) or all(rollout.trained_mask[i - len(rollout.prompt_ids)]
                                                    for i in range(*d.ours)), d  # fmt: skip
    # the engine's log-probs, from its cache kept across turns, are those of a fresh forward over the whole stream
    rollouts = [r for g in groups for r in g.rollouts]
    sequences = [RenderedSequence(r.prompt_ids + r.token_ids, (False,) * len(r.prompt_ids) + r.trained_mask)
                 for r in rollouts]  # fmt: skip
    (batch,) = pack(sequences, max(map(len, sequences)) * len(sequences), 1)
    with torch.no_grad():
        forward = token_logprobs(model, batch)
    for i, r in enumerate(rollouts):
        ids = batch.seq_ids[0] == i
        expected = forward[0][ids & batch.loss_mask[0]]
        assert torch.allclose(torch.tensor(r.sampled_logprobs), expected.float(), atol=1e-4)


def _conversation(tokenizer, task, rollout):
    """The conversation as text messages: the prompt, then the decoded turns and user turns in order."""
    messages, run, flag = list(task.prompt), [], None
    for token, sampled in [*zip(rollout.token_ids, rollout.trained_mask, strict=True), (None, None)]:
        if flag is not None and (sampled != flag or token is None):
            if flag:
                messages.append(Message("assistant", tokenizer.decode(run, skip_special_tokens=True)))
            else:
                text = tokenizer.decode(run, skip_special_tokens=False)
                messages.append(Message("user", text.split("user\n", 1)[1].split("<|im_end|>")[0]))
            run = []
        run.append(token)
        flag = sampled
    return messages


def test_plain_sampler_runs_the_same_episodes(tiny):
    """The fallback sampler (plain generate, no kept cache) gives episodes of the same shape."""
    model, tokenizer = tiny
    tasks = [RLTask(prompt=[{"role": "user", "content": "count 3"}], verifier="math", answer="1")]
    (group,) = run_groups(HFSampler(model.eval(), tokenizer), tokenizer, Countdown(), tasks, 2,
                          SamplingParams(max_new_tokens=8, seed=1))  # fmt: skip
    assert all(s.metrics["turns"] == 3 for s in group.scores)
    assert all(tokenizer.decode([i for i, m in zip(r.token_ids, r.trained_mask, strict=True) if not m]).count("more") == 2
               for r in group.rollouts)  # fmt: skip


@pytest.mark.parametrize("kind", ["engine", "plain"])
def test_single_turn_rlvr_is_the_verifier_environment(tiny, kind):
    """Through `VerifierEnv` the driver gives exactly the rollouts and rewards of plain single-turn sampling, with
    the fused engine and with the plain `generate` fallback."""
    model, tokenizer = tiny
    make = {"engine": lambda: RolloutEngine(model.eval(), tokenizer, batch_size=8),
            "plain": lambda: HFSampler(model.eval(), tokenizer, batch_size=8)}  # fmt: skip
    engine = make[kind]()
    tasks, params = arithmetic_tasks(3, seed=5), SamplingParams(max_new_tokens=16, seed=11)
    reward = ShapedReward(Shaping(format_weight=0.5))
    try:
        before = sample_groups(engine, reward.score, tasks, 4, params)
        after = run_groups(engine, tokenizer, VerifierEnv(reward), tasks, 4, params)
    finally:
        reward.close()
    assert [g.rollouts for g in after] == [g.rollouts for g in before]
    assert [g.scores for g in after] == [g.scores for g in before]


def test_a_call_cut_by_the_closing_tag_stop_string_still_counts():
    (call,) = parse_calls('<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}')
    assert call.error is None and call.arguments == {"expression": "1"}
