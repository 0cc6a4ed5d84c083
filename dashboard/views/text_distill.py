"""The Distill page for a language model: a student trained alone next to the same student distilled from the
teacher (gap closed, in perplexity), or Minitron's recipe: a student pruned from the teacher and distilled, next to
the same shapes distilled from random initialisation."""
from __future__ import annotations

import streamlit as st

from compression.tasks.text import control_text
from compression.text.train import DEFAULT_STEPS

from ..components import submit_job
from ..display import plot
from ..state import records
from .jobs import job_panel
from .text_charts import measured, perplexity_chart, text_frame

INTRO = ("Train a small **student** language model to imitate a **teacher**, next to the very same student "
         "trained alone: same seed, text and steps. Or cut the student from the teacher first (Minitron).")
STUDENTS = {"a smaller gpt": "gpt:layers=2,width=64,heads=4,context=128",
            "pruned from the teacher (Minitron)": "pruned:heads_mlp=0.5"}


def text_distill_page(params: dict) -> None:
    all_runs = records(dataset=params["dataset"])
    teachers = [r for r in measured(all_runs) if r["status"] == "done" and r["kind"] in ("train", "prune")]
    with st.form("distill-text-form"):
        c1, c2 = st.columns(2)
        options = ["sidebar"] + [r["run_id"] for r in teachers[::-1]]
        teacher = c1.selectbox("Teacher", options, format_func=lambda o: "the sidebar's language model (trained or "
                               "cached)" if o == "sidebar" else f"#{o} {next(r['label'] for r in teachers if r['run_id'] == o)}")
        kind = c2.radio("Student", list(STUDENTS), horizontal=True,
                        help="Minitron: cut the student from the teacher (half the heads and MLP units), then distil; "
                             "the control arm has the same shapes from random initialisation")
        student = c2.text_input("Student spec", STUDENTS[kind], help="gpt:... or pruned:heads_mlp=0.5 / "
                                                                     "pruned:depth=0.5")
        c3, c4, c5 = st.columns(3)
        steps = c3.number_input("Steps per student", 10, 100_000, DEFAULT_STEPS)
        temperature = c4.select_slider("Temperature T", [1.0, 2.0, 4.0, 8.0], value=2.0)
        alpha = c5.slider("alpha (weight of the teacher)", 0.0, 1.0, 0.5, 0.05)
        if st.form_submit_button("Distill", type="primary"):
            submit_job("distill", {"teacher": params["model"] if teacher == "sidebar" else teacher,
                                   "student": student.strip(), "dataset": params["dataset"],
                                   "temperatures": [temperature], "alpha": alpha, "seeds": [0],
                                   "student_steps": int(steps), "device": params["device"]})
    job_panel(("distill",), key="distill")
    students = [r for r in measured(all_runs) if r["kind"] == "distill" and r["status"] == "done"]
    if not students:
        st.info("No distilled language models on this data set yet. Pick a teacher and a student and press "
                "**Distill**.")
        return
    by_id = {r["run_id"]: r for r in all_runs}
    # a study: one teacher, one student spec, one job (CLI runs have no job: their spec still tells studies apart,
    # and the gap closed must never pair one study's student alone with another's distilled one)
    def study_of(run: dict) -> tuple:
        return run["parent_id"], run.get("job_id"), run["config"].get("student")
    studies = {f"teacher #{k[0]}, student {k[2]}" + (f", job {k[1]}" if k[1] else ""): k
               for k in dict.fromkeys(study_of(r) for r in sorted(students, key=lambda r: -r["run_id"]))}
    study = studies[st.selectbox("Study", list(studies))]
    group = [r for r in students if study_of(r) == study]
    teacher_rec = by_id.get(study[0])
    rows = {r["method"]: r for r in group}
    cols = st.columns(4)
    if teacher_rec:
        cols[0].metric("Teacher perplexity", f"{teacher_rec['perplexity']:.2f}")
    for col, (method, title) in zip(cols[1:], (("student_plain", "Student alone"), ("student_kd", "Distilled"),
                                               ("student_pruned_kd", "Pruned, then distilled"))):
        if method in rows:
            col.metric(title, f"{rows[method]['perplexity']:.2f}")
    plain, kd = rows.get("student_plain"), rows.get("student_kd")
    if plain and kd and teacher_rec and plain["perplexity"] != teacher_rec["perplexity"]:
        closed = (plain["perplexity"] - kd["perplexity"]) / (plain["perplexity"] - teacher_rec["perplexity"])
        st.caption(f"Gap closed by distillation: {closed:.0%} of the way from the student alone to the teacher "
                   "(same seed, text and steps).")
    if "student_pruned_kd" in rows and kd:
        better = rows["student_pruned_kd"]["perplexity"] < kd["perplexity"]
        st.caption(f"Minitron: cut from the teacher and distilled, perplexity {rows['student_pruned_kd']['perplexity']:.2f}; "
                   f"the same shapes from random initialisation, distilled the same way, {kd['perplexity']:.2f}. "
                   + ("The teacher's weights are a head start." if better else "Here the head start did not show."))
    controls = [by_id[i] for i in dict.fromkeys(r.get("control_run_id") for r in group) if i in by_id]
    for control in controls:  # the teacher trained as long as the students: what the steps alone buy
        st.caption(f"Fair control #{control['run_id']}: the teacher trained the same {control['config'].get('steps')} "
                   f"more steps the same way, perplexity {control['perplexity']:.2f}. " + " ".join(
                       f"{r['label']}: {control_text(r)}." for r in group if r.get("control_run_id") == control["run_id"]))
    plot(perplexity_chart(text_frame(([teacher_rec] if teacher_rec else []) + controls + group), "params",
                          title="Perplexity vs parameters: teacher, its fair control and students"),
         key="distill-text-chart")
