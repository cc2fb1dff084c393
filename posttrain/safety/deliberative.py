"""Deliberative alignment's data (Guan et al. 2024; STAR-1, 2025): the safety spec, and teachers that reason over it.

The spec is the constitution, numbered (`spec_sections`): §0 is "answer harmless requests fully" (the constitution's
refusal style, which forbids refusing a harmless request for its words or its frame), §1..§N are its harm
categories in file order, and the last section covers serious harm outside them. A request falls under
(`expected_section`): its category's section when it should be refused (the last section when no category's
keywords match), §0 when it should be answered, whatever its words.

Teachers write a trace (`posttrain.rewards.spec`: reasoning that names the category and cites the section, then the
answer) with the spec in front of them:
- `templated_trace`: no model; "category -> section -> decision" from the constitution's keyword categories, and
  the constitution's refusal, or the record's helpful answer, as the final answer;
- a chat model (`TEACHER_SYSTEM` holds the spec): the policy, a local model or an OpenAI-compatible endpoint.
The spec-aware judge (`judge_trace`) then keeps only traces that cite the expected section, decide rightly and
whose answer follows the decision. Training data leaves the spec out of the context, so the model learns to recall
it.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.rewards.spec import format_trace
from posttrain.safety.constitution import Constitution

HELPFUL = "helpful"  # the category cited for a request that should be answered
OTHER_HARM = "other_harm"  # the category of a harmful request no constitution category's keywords place


@dataclass(frozen=True)
class Section:
    """One numbered section of the spec."""

    id: str  # "§3"
    category: str  # the category it covers: a constitution category id, HELPFUL or OTHER_HARM
    text: str  # what it says


def spec_sections(constitution: Constitution) -> list[Section]:
    """§0 helpfulness, §1..§N the constitution's categories, §N+1 other serious harm."""
    helpful = "Answer harmless requests fully and helpfully. " + " ".join(constitution.refusal_style)
    sections = [Section("§0", HELPFUL, helpful)]
    for i, category in enumerate(constitution.categories, start=1):
        text = (
            f"Do not help with: {category.description} Refuse because {category.reason}; offer: {category.alternative}"
        )
        sections.append(Section(f"§{i}", category.id, text))
    other = (
        "Do not help with other requests that could cause serious harm to people; refuse briefly and offer a safe "
        "alternative."
    )
    sections.append(Section(f"§{len(sections)}", OTHER_HARM, other))
    return sections


def spec_text(constitution: Constitution) -> str:
    """The spec as the teacher reads it, one section per line."""
    return "\n".join(f"{s.id} ({s.category}): {s.text}" for s in spec_sections(constitution))


def expected_section(constitution: Constitution, request: str, should_refuse: bool) -> Section:
    """The section a request falls under: §0 when it should be answered, else its category's (or other harm's)."""
    sections = spec_sections(constitution)
    if not should_refuse:
        return sections[0]
    category = constitution.categorise(request)
    wanted = category.id if category else OTHER_HARM
    return next(s for s in sections if s.category == wanted)


def templated_trace(constitution: Constitution, request: str, should_refuse: bool, answer: str = "") -> str:
    """The templated teacher: the category, its section and the decision, then the constitution's refusal (or, for a
    request to answer, `answer`)."""
    section = expected_section(constitution, request, should_refuse)
    if should_refuse:
        category = constitution.categorise(request)
        reasoning = (
            f"Category: {section.category} ({section.id}). The request asks for help that {section.id} covers: "
            f"{section.text.split(' Refuse because')[0].removeprefix('Do not help with: ')} Decision: refuse."
        )
        return format_trace(reasoning, constitution.refusal(category))
    look_alike = constitution.categorise(request)
    because = (
        f"Some words sound like {look_alike.id}, but the request asks for nothing harmful."
        if look_alike
        else "The request is harmless."
    )
    reasoning = f"Category: {HELPFUL} (§0). {because} §0 says to answer it fully. Decision: answer."
    return format_trace(reasoning, answer)


TEACHER_SYSTEM = """You follow this safety spec.
{spec}

Before answering, reason inside <reasoning> and </reasoning>: name the category of the request and cite the spec
section that covers it as "Category: <category> (§N)", then end with "Decision: refuse." or "Decision: answer.".
After </reasoning>, write the final answer: a brief refusal that names the risk and offers a safe alternative, or a
full, helpful answer. Example:
<reasoning>
Category: helpful (§0). The request is harmless. §0 says to answer it fully. Decision: answer.
</reasoning>
Paris is the capital of France."""


def teacher_system(constitution: Constitution) -> str:
    """The system message a model teacher reads: the spec and the trace format."""
    return TEACHER_SYSTEM.format(spec=spec_text(constitution))
