"""The Distill page for an image classifier: students trained from a teacher's soft targets next to the very same
students trained alone (same seeds, data and epochs), and the share of the gap to the teacher they close."""
from __future__ import annotations

import streamlit as st

from compression.core.models import MODELS
from compression.labs.distill import study_summary
from compression.tasks import IMAGE_TASK, task_of

from ..charts import runs_frame, tradeoff_chart
from ..components import submit_job
from ..display import plot
from ..state import model_spec, records
from .jobs import job_panel

INTRO = ("Train a small **student** to imitate a large **teacher**, and compare it with the very same student "
         "trained without the teacher: same seeds, same data, same epochs.")


def image_distill_page(params: dict) -> None:
    with st.expander("Why soft targets help, and what T and alpha do"):
        st.markdown("A label says *this is a 3*. The teacher's probabilities also say *it looks a bit like an 8, "
                    "not at all like a 1*: that similarity structure is extra information per example, which matters "
                    "most when labels are scarce (Hinton et al. trained on 3% of the data).  \n"
                    "**Temperature T** softens both distributions (divide logits by T) so small probabilities count; "
                    "the loss is scaled by T² to keep its gradients comparable.  \n"
                    "**alpha** weighs imitation of the teacher (alpha) against the true labels (1 − alpha).")
    _distill_form(params)
    job_panel(("distill",), key="distill")
    _studies(params)


def _distill_form(params: dict) -> None:
    teachers = [r for r in records(dataset=params["dataset"])
                if r["status"] == "done" and r["kind"] in ("train", "prune")]
    with st.form("distill-form"):
        c1, c2 = st.columns(2)
        options = ["sidebar"] + [r["run_id"] for r in teachers[::-1]]
        teacher = c1.selectbox("Teacher", options,
                               format_func=lambda o: "the sidebar's baseline model (trained or cached)"
                               if o == "sidebar" else f"#{o} {next(r['label'] for r in teachers if r['run_id'] == o)}",
                               help=f"the sidebar's model is {model_spec()}")
        students = [n for n in MODELS.names() if task_of(n) is IMAGE_TASK]  # language models: text_distill
        student_name = c2.selectbox("Student model", students, index=students.index("mlp"))
        student_args = c2.text_input("Student arguments", "hidden=16")
        c3, c4, c5 = st.columns(3)
        temperatures = c3.multiselect("Temperatures T", [1.0, 2.0, 4.0, 8.0, 16.0], default=[4.0],
                                      help="several values run a sweep")
        alpha = c4.slider("alpha (weight of the teacher)", 0.0, 1.0, 0.9, 0.05)
        fraction = c5.select_slider("Labelled fraction", [0.03, 0.05, 0.1, 0.2, 0.5, 1.0], value=0.1)
        c6, c7 = st.columns(2)
        epochs = c6.number_input("Student epochs", 1, 500, 40)
        seeds = c7.multiselect("Seeds", list(range(10)), default=[0, 1, 2], help="several seeds show the spread")
        if st.form_submit_button("Distill", type="primary"):
            student = f"{student_name}:{student_args.replace(' ', '')}" if student_args.strip() else student_name
            submit_job("distill", {"teacher": params["model"] if teacher == "sidebar" else teacher, "student": student,
                                   "dataset": params["dataset"], "temperatures": temperatures, "alpha": alpha,
                                   "label_fraction": fraction, "seeds": seeds, "epochs": int(epochs),
                                   "teacher_epochs": params["epochs"], "device": params["device"],
                                   "latency_batch": params["latency_batch"]})


def _studies(params: dict) -> None:
    students = [r for r in records(kind="distill", dataset=params["dataset"]) if r["status"] == "done"]
    if not students:
        st.info("No distillation runs on this dataset yet. Pick a teacher and a student and press **Distill**.")
        return
    by_id = {r["run_id"]: r for r in records(dataset=params["dataset"])}
    studies = sorted({(r["parent_id"], r["job_id"]) for r in students}, key=lambda k: -(k[1] or 0))
    study = st.selectbox("Study", studies, format_func=lambda k: f"job {k[1]}: teacher #{k[0]} "
                         f"{by_id[k[0]]['label'] if k[0] in by_id else '(deleted)'}")
    group = [r for r in students if (r["parent_id"], r["job_id"]) == study]
    teacher_rec = by_id.get(study[0])
    summary = study_summary(group, teacher_rec)
    cols = st.columns(4)
    cols[0].metric("Teacher accuracy", f"{summary['teacher_accuracy']:.3f}" if teacher_rec else "-")
    cols[1].metric("Plain student (mean)",
                   f"{summary['plain_mean']:.3f}" if summary["plain_mean"] is not None else "-")
    for i, kd in enumerate(summary["kd"][:2]):
        cols[2 + i].metric(f"KD student T={kd['temperature']:g} (mean)", f"{kd['kd_mean']:.3f}",
                           f"gap closed {kd['gap_closed']:.0%}" if kd["gap_closed"] is not None else None)
    frame = runs_frame(([teacher_rec] if teacher_rec else []) + group)
    plot(tradeoff_chart(frame, "params", title="Accuracy vs parameters: teacher, plain and KD students "
                                               "(each seed a point, 95% CI)"), key="distill-chart")
    st.caption("Gap closed = (mean KD − mean plain) / (teacher − mean plain): 100% means the student matched the "
               "teacher.")
