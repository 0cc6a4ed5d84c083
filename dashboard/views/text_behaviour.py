"""What compression changed in a language model, shown: greedy completions side by side, the sample text with the
tokens whose top-1 prediction flipped highlighted, and the flip rate and loss change with their intervals.

Reads the dict `compression.labs.diff.diff_runs` returns for two text runs (kind "text"). The words and the HTML are
pure (the offline report uses them too); `show_text_diff` and `text_behaviour_section` draw them on a page.
"""
from __future__ import annotations

import html

import streamlit as st

from compression import LabError
from compression.labs.diff import diff_runs
from compression.labs.records import as_record
from compression.tasks.text import control_text
from compression.text.behaviour import BETTER, OTHER, WORSE

from ..charts_behaviour import loss_change_chart
from ..display import plot
from ..state import get_store

FLIP_MEANING = ("A flip is a position in the test text where the two models' most likely next token (top-1) differs: "
                "there, greedy decoding would write something different. The loss change is how much more surprised "
                "B is than A by the true next token, in nats per token (positive: B is worse).")
# a flipped token's colour, by how B's top-1 fares against the true token
FLIP_STYLE = {
    WORSE: ("#fee2e2", "#dc2626", "A predicted it, B no longer does"),
    BETTER: ("#dcfce7", "#16a34a", "B predicts it, A did not"),
    OTHER: ("#fef3c7", "#d97706", "neither predicts it, but they guess differently"),
}
TEXT_BOX = ("font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px;white-space:pre-wrap;"
            "line-height:1.6;border:1px solid #e5e7eb;border-radius:6px;padding:8px 10px")


# --------------------------------------------------------------------------- words

def _ci(pair, fmt: str) -> str:
    return f"[{format(pair[0], fmt)}, {format(pair[1], fmt)}]"


def text_what_changed(diff: dict) -> dict[str, str]:
    """The Report's lines for two language models: flips, loss change, and what greedy decoding shows."""
    lo, hi = diff["loss_change_ci95"]
    noise = " (could be noise: the interval contains 0)" if lo <= 0 <= hi else ""
    others = diff["flips"] - diff["newly_wrong"] - diff["newly_right"]
    same = sum(c["a"] == c["b"] for c in diff["completions"])
    # the whole test set's perplexities, paired window by window, first: the figure a reader compares; before it, a
    # fine-tuned B against its fair control (its parent trained as long), which is the fair comparison
    paired = {"perplexity": diff["paired_perplexity_text"]} if diff.get("paired_perplexity_text") else {}
    fair = {"fair": f"B against its fair control: {diff['fair']}"} if diff.get("fair") else {}
    return {**fair, **paired,
        "flips": (f"The most likely next token changed at {diff['flip_rate']:.1%} of {diff['positions']:,} test "
                  f"positions (95% CI {_ci(diff['flip_rate_ci95'], '.1%')}): {diff['newly_wrong']} where only A "
                  f"predicted the true token, {diff['newly_right']} where only B did, {others} where neither did"),
        "loss": (f"Loss per token changed by {diff['loss_change']:+.3f} nats {_ci(diff['loss_change_ci95'], '+.3f')}"
                 f"{noise}: B's perplexity is {diff['perplexity_ratio']:.2f}x A's on these tokens "
                 f"{_ci(diff['perplexity_ratio_ci95'], '.2f')}"),
        "completions": (f"Greedy completions of {len(diff['completions'])} fixed prompts ({diff['completion_tokens']} "
                        f"tokens each): {same} identical, {len(diff['completions']) - same} different"),
    }


# --------------------------------------------------------------------------- HTML (escaped: the text is data)

def _visible(text: str) -> str:
    """A flipped newline or tab would be an invisible highlight: show a mark for it, then the character."""
    return text.replace("\n", "\u21b5\n").replace("\t", "\u21e5\t")


def _flip_span(segment: dict, names: tuple[str, str]) -> str:
    fill, line, _ = FLIP_STYLE[segment["change"]]
    tip = (f"{names[0]} predicted {segment['a']!r}, {names[1]} predicted {segment['b']!r}; "
           f"the text has {segment['text']!r}")
    return (f'<span style="background:{fill};border-bottom:2px solid {line}" title="{html.escape(tip)}">'
            f"{html.escape(_visible(segment['text']))}</span>")


def legend_html() -> str:
    items = "".join(f'<span style="background:{fill};border-bottom:2px solid {line};padding:0 4px;margin-right:10px">'
                    f"{html.escape(meaning)}</span>" for fill, line, meaning in FLIP_STYLE.values())
    return f'<div style="font-size:12px;margin:4px 0">{items}</div>'


def flipped_text_html(diff: dict, names: tuple[str, str] = ("A", "B")) -> str:
    """The sample sequence as text, each token whose top-1 prediction flipped highlighted by how B fares against
    the truth (hover: both models' guesses), with a legend above it."""
    sample = diff["sample"]
    body = html.escape(sample["prompt"]) + "".join(
        html.escape(s["text"]) if s["change"] is None else _flip_span(s, names) for s in sample["segments"])
    return f'{legend_html()}<div style="{TEXT_BOX}">{body}</div>'


def completions_html(diff: dict, names: tuple[str, str] = ("A", "B")) -> str:
    """The greedy completions as a two-column table: the prompt in bold, each model's continuation after it."""
    def cell(prompt: str, completion: str) -> str:
        return (f'<td style="{TEXT_BOX};vertical-align:top;width:50%"><b>{html.escape(prompt)}</b>'
                f"{html.escape(completion)}</td>")
    rows = "".join(f"<tr>{cell(c['prompt'], c['a'])}{cell(c['prompt'], c['b'])}</tr>" for c in diff["completions"])
    return f"<table><tr><th>{html.escape(names[0])}</th><th>{html.escape(names[1])}</th></tr>{rows}</table>"


def text_change_html(diff: dict, names: tuple[str, str]) -> str:
    """A text diff in the offline report: the lines, the completions side by side, the flipped sample."""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in text_what_changed(diff).values())
    flips = len(diff["flipped_tokens"])
    return (f"<ul>{lines}</ul>{completions_html(diff, names)}"
            f"<p>The first test sequence, {flips} flipped token{'s' * (flips != 1)} highlighted:</p>"
            f"{flipped_text_html(diff, names)}")


# --------------------------------------------------------------------------- on a page

def text_behaviour_of(run_a: int, run_b: int) -> dict:
    """`diff_runs(A, B)` for two language-model runs, cached per pair (both models run: about a second), with
    "fair": B against its fair control in words when B fine-tuned after its parent."""
    store = get_store()
    run = store.get_run(run_b)
    stamps = tuple(store.get_run(i)["created_at"] for i in (run_a, run_b))  # a new run under a reused id
    fair = control_text(as_record(run))
    return {**_text_behaviour(store.url, run_a, run_b, stamps), **({"fair": fair} if fair else {})}


@st.cache_data(show_spinner="Running both language models on the same text...", max_entries=32)
def _text_behaviour(db_url: str, run_a: int, run_b: int, stamps: tuple) -> dict:
    return diff_runs(get_store(), run_a, run_b)


def show_completions(diff: dict, names: tuple[str, str]) -> None:
    left, right = st.columns(2)
    left.markdown(f"**{names[0]}**")
    right.markdown(f"**{names[1]}**")
    for c in diff["completions"]:
        left.code(c["prompt"] + c["a"], language=None, wrap_lines=True)
        right.code(c["prompt"] + c["b"], language=None, wrap_lines=True)


def show_flipped_text(diff: dict, names: tuple[str, str]) -> None:
    flips = len(diff["flipped_tokens"])
    st.caption(f"The first of the {diff['sequences']} test sequences ({diff['context']} tokens): {flips} token"
               f"{'s' * (flips != 1)} where the two models' top-1 prediction differs. Hover one for both guesses.")
    st.html(flipped_text_html(diff, names))


def show_text_diff(diff: dict, names: tuple[str, str], compact: bool = False) -> None:
    """Figures with CIs, a sentence on what they mean, the completions side by side and the flipped sample text.
    `compact` (the Report): the lines instead of metric cards, and no histogram."""
    words = text_what_changed(diff)
    if compact:
        st.markdown("\n".join(f"- {line}" for line in words.values()))
    else:
        m1, m2, m3 = st.columns(3)
        m1.metric("Next-token flips", f"{diff['flip_rate']:.1%}", delta_color="off",
                  delta=f"95% CI {_ci(diff['flip_rate_ci95'], '.1%')}", help=f"{diff['flips']} of "
                  f"{diff['positions']} positions; the intervals are a bootstrap over the {diff['sequences']} "
                  "test sequences (tokens of one text are not independent)")
        m2.metric("Loss change (nats/token)", f"{diff['loss_change']:+.3f}", delta_color="off",
                  delta=f"95% CI {_ci(diff['loss_change_ci95'], '+.3f')}", help="mean over the positions of B's loss "
                  "minus A's at the true next token")
        m3.metric("Perplexity B / A", f"{diff['perplexity_ratio']:.2f}x", delta_color="off",
                  delta=f"95% CI {_ci(diff['perplexity_ratio_ci95'], '.2f')}", help="exp(loss change), on these "
                  "test positions")
        st.caption(". ".join(words[k] for k in ("fair", "perplexity", "flips", "loss") if k in words) + ".")
    st.caption(FLIP_MEANING)
    st.markdown(f"**Greedy completions of fixed prompts**, {diff['completion_tokens']} tokens each")
    show_completions(diff, names)
    show_flipped_text(diff, names)
    if not compact:
        plot(loss_change_chart(diff, names), "text-behaviour-loss")


def text_behaviour_section(text_records: list[dict]) -> None:
    """The Compare page's behaviour view for language-model runs: pick B (default: the newest run with a parent)
    and A (default: its parent), then show what changed."""
    st.header("Behaviour: what did compression change?")
    st.write("Perplexity hides churn: a compressed model can keep its perplexity and still write other words. "
             "Pick two language-model runs on the same text; the default is a run and its parent.")
    done = {r["run_id"]: r for r in text_records if r["status"] == "done" and r.get("has_answers")}
    newest = list(done)[::-1]
    if len(newest) < 2:
        st.info("Behaviour needs two finished language-model runs: compress a baseline on a lab page first.")
        return
    name_of = lambda i: f"#{i} {done[i]['label']}"  # noqa: E731
    with_parent = [i for i in newest if done[i].get("parent_id") in done]
    b1, b2 = st.columns(2)
    run_b = b1.selectbox("Run (B)", newest, index=newest.index(with_parent[0]) if with_parent else 0,
                         format_func=name_of, key="text-behaviour-b")
    others = [i for i in newest if i != run_b]
    parent = done[run_b].get("parent_id")
    run_a = b2.selectbox("Compared with (A)", others, index=others.index(parent) if parent in others else 0,
                         format_func=name_of, key=f"text-behaviour-a-{run_b}")
    try:
        diff = text_behaviour_of(run_a, run_b)
    except LabError as err:
        st.error(str(err))
        return
    show_text_diff(diff, (f"A #{run_a}", f"B #{run_b}"))
