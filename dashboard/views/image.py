"""The image classifiers' view: accuracy (higher is better, changes in points), one timed batch, every lab.
What each page draws for an image data set hangs off IMAGE_VIEW; the labs' forms live in image_*.py beside it."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from compression.core.models import list_models
from compression.tasks import IMAGE_TASK

from ..charts import runs_frame, tradeoff_chart, training_curves
from ..components import behaviour_of
from ..display import plot
from .base import Change, Lab, Plan, Results, Run, Search, Sidebar, View
from .image_cards import metric_cards, upload_model
from .image_change import CAPTION, INTRO_HTML, image_change_html, show_image_change
from .image_compare import image_compare
from .image_distill import INTRO as DISTILL_INTRO, image_distill_page
from .image_prune import INTRO as PRUNE_INTRO, image_prune_form, image_prune_results
from .image_quantize import image_quantize_lab
from .image_search import INTRO as SEARCH_INTRO, image_search_form, image_search_results
from .registry import register_view


def _model_help(names: list[str]) -> str:
    return (f"the model every lab starts from: {len(list_models())} zoo models and "
            f"{len(names) - len(list_models())} torchvision classifiers; type to search")


@st.cache_data(max_entries=16, show_spinner=False)
def _live_curves(events: list[dict]):
    """The live curves, built once per new epoch: the panel polls every 2 s, a Plotly figure costs ~0.1 s."""
    return training_curves(events)


def _home_charts(frame: pd.DataFrame) -> None:
    left, right = st.columns(2)
    plot(container=left, fig=tradeoff_chart(frame, "params"), key="home-params")
    plot(container=right, fig=tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency (largest batch)"),
         key="home-latency")


def _report_charts(chosen: list[dict]) -> None:
    left, right = st.columns(2)
    frame = runs_frame(chosen)
    plot(tradeoff_chart(frame, "size_bytes"), "report-size", left)
    plot(tradeoff_chart(frame, "latency_ms", title="Accuracy vs CPU latency"), "report-latency", right)
    st.dataframe(pd.DataFrame(frame.drop(columns=["config"])), hide_index=True)


# --------------------------------------------------------------------------- the Plan page

PLAN_INTRO = ("Name a target and the largest accuracy loss you accept. The lab searches recipes (channel removal, "
              "weight pruning, fine-tuning with distillation, int8 or weight sharing) on the sidebar's model, keeps "
              "every trial as a run, and verifies the winner: timed again together with the baseline, its size the "
              "bytes of its file.")
# what a user asks for -> the target kind, and the factors the slider offers
PLAN_GOALS = {"Faster": ("latency", [1.5, 2.0, 2.5, 3.0, 4.0, 5.0], 2.5),
              "Smaller file": ("size", [2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0], 20.0),
              "Fewer non-zero parameters": ("params", [2.0, 5.0, 10.0, 20.0], 5.0),
              "Fewer MACs": ("macs", [1.5, 2.0, 3.0, 4.0, 5.0], 3.0)}


def _plan_budget(column) -> dict:
    return {"max_drop": column.slider("Largest accuracy drop (pt)", 0.0, 5.0, 1.0, 0.1)}


def _plan_winner(best: dict, speed, quality, churn) -> None:
    quality.metric("Accuracy", f"{best['accuracy']:.4f}", f"{-best['accuracy_drop_pt']:+.2f} pt")
    quality.caption(f"95% CI [{best['accuracy_ci'][0]:.3f}, {best['accuracy_ci'][1]:.3f}]")
    churn.metric("Answers changed", "-" if best.get("flip_rate") is None else f"{best['flip_rate']:.1%}",
                 help="share of test answers that differ from the baseline's (flip rate)")


IMAGE_VIEW = register_view(View(
    task=IMAGE_TASK,
    sidebar=Sidebar(model_help=_model_help, model_args_placeholder="e.g. width=64 or hidden=256-256",
                    length_input=lambda column: column.number_input("Epochs", 1, 200, 10, key="epochs"),
                    train_params=lambda session: {}),  # the epochs are every task's key (the CLI's train verb's)
    run=Run(metric_cards=metric_cards, training_curves=training_curves, live_curves=_live_curves,
            length_text=lambda params: f"{params['epochs']} epochs", own_model=upload_model,
            sample=lambda record: None),
    prune=Lab(intro=PRUNE_INTRO, form=image_prune_form, results=image_prune_results),
    quantize=Lab(form=image_quantize_lab),
    distill=Lab(intro=DISTILL_INTRO, form=image_distill_page),
    search=Search(intro=SEARCH_INTRO, form=image_search_form, results=image_search_results, space_note=".",
                  noun="image data"),
    plan=Plan(intro=PLAN_INTRO, goals=PLAN_GOALS, budget=_plan_budget, trials=(48, 12, None),
              limit=lambda limit: f"{limit:g} pt", winner=_plan_winner),
    results=Results(frame=runs_frame, home=_home_charts, compare=image_compare, report=_report_charts, no_runs="",
                    retime_batch=256),
    change=Change(caption=CAPTION, compute=behaviour_of, show=show_image_change, html=image_change_html,
                  intro=INTRO_HTML),
))
