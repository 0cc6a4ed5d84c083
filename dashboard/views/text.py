"""The language models' view: perplexity (lower is better, with bits per byte; changes as a % increase), a prefill
and a decode phase, the labs that compress language models. What each page draws for a text data set hangs off
TEXT_VIEW; the labs' forms live in text_*.py beside it."""
from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from compression.tasks import TEXT_TASK
from compression.text.train import DEFAULT_STEPS

from ..display import plot
from .base import Change, Lab, Plan, Results, Run, Search, Sidebar, View
from .registry import register_view
from .text_behaviour import FLIP_MEANING, show_text_diff, text_behaviour_of, text_change_html
from .text_charts import lm_training_curves, perplexity_chart, text_frame
from .text_distill import INTRO as DISTILL_INTRO, text_distill_page
from .text_hf import sidebar_model_note
from .text_prune import INTRO as PRUNE_INTRO, paired_lines, text_prune_form, text_prune_results
from .text_quantize import text_quantize_lab
from .text_search import INTRO as SEARCH_INTRO, text_search_form, text_search_results
from .text_widgets import sample_panel, text_compare, text_metric_cards


@st.cache_data(max_entries=16, show_spinner=False)
def _live_curves(events: list[dict]):
    """The live curves, built once per new step reported: a language model's points are steps with a validation
    perplexity (the panel polls every 2 s, a Plotly figure costs ~0.1 s)."""
    return lm_training_curves([{**e, "step": e["epoch"]} for e in events if "val_perplexity" in e])


def _own_model(params: dict) -> None:
    st.caption("Your own language model: pick **hf** in the sidebar and give its folder (config.json, "
               "*.safetensors and the tokenizer) as its model argument (the folder's path); it is read offline, and .bin (pickle) weights are "
               "refused.")


def _home_charts(frame: pd.DataFrame) -> None:
    left, right = st.columns(2)
    plot(container=left, fig=perplexity_chart(frame, "size_bytes"), key="home-size")
    plot(container=right, fig=perplexity_chart(frame, "prefill_ms", title="Perplexity vs prefill latency"),
         key="home-latency")
    st.caption("Lower is better on both axes. Magnitude, Wanda and SparseGPT keep every weight's slot (zeros are "
               "stored), so they sit at the same size and speed with a different perplexity; open the Report for "
               "the paired speed-ups and what changed in the completions.")


def _report_charts(chosen: list[dict]) -> None:
    left, right = st.columns(2)
    frame = text_frame(chosen)
    plot(perplexity_chart(frame, "size_bytes"), "report-size", left)
    plot(perplexity_chart(frame, "decode_ms_per_token", title="Perplexity vs decode latency"), "report-latency",
         right)
    st.dataframe(frame, hide_index=True)
    paired_lines(chosen)


# --------------------------------------------------------------------------- the Plan page

PLAN_INTRO = ("Name a target and the largest perplexity increase you accept. The lab searches recipes on the "
              "sidebar's language model (remove whole layers, or attention heads and MLP units, ranked on "
              "calibration text; fine-tune with the model as teacher; dynamic int8), keeps every trial as a run, "
              "and verifies the winner: its prefill timed again together with the baseline.")
# faster means the prefill (the batch of prompts), and the budget is a perplexity increase
PLAN_GOALS = {"Faster (prefill)": ("latency", [1.25, 1.5, 2.0, 2.5, 3.0], 2.0),
              "Smaller file": ("size", [1.5, 2.0, 3.0, 4.0, 6.0], 3.0),
              "Fewer non-zero parameters": ("params", [1.25, 1.5, 2.0, 3.0], 1.5)}


def _plan_budget(column) -> dict:
    return {"max_ppl_increase": column.slider("Largest perplexity increase (%)", 0, 50, 10, 1) / 100,
            "time_budget": 60 * column.slider("Time budget (minutes)", 1, 30, 5, 1,
                                               help="no trial starts after it; the best so far is verified")}


def _plan_winner(best: dict, speed, quality, churn) -> None:
    if best.get("decode_speedup"):
        lo_d, hi_d = best["decode_ci95"]
        speed.caption(f"decode (one token at a time, batch 1): {best['decode_speedup']:.2f}x [{lo_d:.2f}, {hi_d:.2f}], "
                      "the trial's own paired timing")
    fair = best.get("control_perplexity") is not None  # a fine-tuned winner: against the parent trained as long
    quality.metric("Perplexity", f"{best['perplexity']:.3f}", f"{best['quality_loss']:+.1f}%", delta_color="inverse",
                   help="lower is better; the change is against " + (
                       f"its fair control #{best.get('control_run_id')}, the baseline trained the same "
                       f"{best.get('control_steps') or ''} more steps (against the baseline as stored: "
                       f"{100 * best['perplexity_increase']:+.1f}%)" if fair else "the baseline's") + ", on the test split")
    quality.caption(f"95% CI [{best['perplexity_ci95'][0]:.3f}, {best['perplexity_ci95'][1]:.3f}]")
    churn.metric("Next tokens changed", "-" if best.get("flip_rate") is None else f"{best['flip_rate']:.1%}",
                 help="share of test positions where the top next-token prediction differs from the baseline's")


def _names(names: tuple[str, str]) -> tuple[str, str]:
    return f"A {names[0]}", f"B {names[1]}"


TEXT_VIEW = register_view(View(
    task=TEXT_TASK,
    sidebar=Sidebar(model_help=lambda names: "a small GPT of ours, or hf for your own Hugging Face folder "
                                             "(its folder as the argument)",
                    model_args_placeholder="e.g. layers=4,width=128 or /my/hf/folder",
                    length_input=lambda column: column.number_input("Training steps", 1, 100_000, DEFAULT_STEPS,
                                                                    key="train_steps"),
                    train_params=lambda session: {"train_steps": int(session.get("train_steps", 0))},
                    model_note=sidebar_model_note),
    run=Run(metric_cards=text_metric_cards, training_curves=lm_training_curves, live_curves=_live_curves,
            length_text=lambda params: f"{params.get('train_steps') or DEFAULT_STEPS} steps", own_model=_own_model,
            sample=sample_panel),
    prune=Lab(intro=PRUNE_INTRO, form=text_prune_form, results=text_prune_results),
    quantize=Lab(form=text_quantize_lab),
    distill=Lab(intro=DISTILL_INTRO, form=text_distill_page),
    search=Search(intro=SEARCH_INTRO, form=text_search_form, results=text_search_results,
                  space_note=" (widths that do not split into the heads are skipped).", noun="text"),
    plan=Plan(intro=PLAN_INTRO, goals=PLAN_GOALS, budget=_plan_budget,
              trials=(24, 4, "each language-model trial fine-tunes for up to 100 steps with the parent teaching, within the time budget"),
              limit=lambda limit: f"{limit:g}% perplexity", winner=_plan_winner),
    results=Results(frame=text_frame, home=_home_charts, compare=text_compare, report=_report_charts,
                    no_runs=" of a language model", retime_batch=None),  # None: the record's own prefill batch
    change=Change(
        caption=("Perplexity hides churn: where each run's most likely next token differs from its reference's, how "
                 "its loss per token moved (95% CIs over test sequences), and greedy completions side by side."),
        compute=lambda run_a, run_b: (text_behaviour_of(run_a, run_b), []),
        show=lambda change, names: show_text_diff(change[0], _names(names), compact=True),
        html=lambda diff, images, names: text_change_html(diff, _names(names)),
        intro=("Perplexity hides churn: the share of test positions where each language model's most likely next "
               "token differs from its reference's, and its change in loss per token, with 95% intervals over test "
               "sequences; greedy completions of fixed prompts side by side; and one test sequence with the flipped "
               "tokens highlighted. " + html.escape(FLIP_MEANING))),
))
