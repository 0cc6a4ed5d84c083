"""A language model's widgets: its metric cards, the prompt box that shows what it writes, and the Compare page's
view of language-model runs (perplexity or bits per byte against a cost, the table, what changed)."""
from __future__ import annotations

import streamlit as st

from compression import LabError
from compression.tasks import TEXT_TASK
from compression.text.floor import floor_badge, floor_text

from ..components import human_bytes, human_count
from ..display import plot
from ..state import get_store
from .text_behaviour import text_behaviour_section
from .text_hf import hf_download
from .text_charts import QUALITY_AXES, TEXT_COST_AXES, perplexity_chart, text_frame


def text_metric_cards(record: dict, baseline: dict | None = None) -> None:
    """A language model's cards: perplexity +- CI, bits per byte, next-token accuracy, size, decode speed."""
    lo, hi = record["perplexity_ci95"]
    cols = st.columns(5)
    cols[0].metric("Perplexity", f"{record['perplexity']:.2f}",
                   help=f"lower is better; 95% bootstrap CI over {record['n_test_sequences']} test sequences")
    cols[0].caption(f"95% CI [{lo:.2f}, {hi:.2f}]")
    cols[1].metric("Bits per byte", f"{record['bits_per_byte']:.3f}",
                   help="the loss per byte of text: comparable across tokenizers, where perplexity is not; "
                        "a uniform guess over bytes is 8")
    a_lo, a_hi = record["next_token_accuracy_ci"]
    cols[1].caption(f"next-token accuracy {record['next_token_accuracy']:.1%} [{a_lo:.1%}, {a_hi:.1%}]")
    cols[2].metric("Parameters", human_count(record["params"]))
    cols[2].caption(f"size {human_bytes(record['size_bytes'])} · {human_count(record['macs_per_token'])} MACs/token")
    phases = {e.get("phase"): e for e in record["latency"]}
    prefill, decode = phases.get("prefill"), phases.get("decode")
    cols[3].metric("Prefill", f"{prefill['median_ms']:.1f} ms" if prefill else "-",
                   help="one batch of B x T tokens in one call")
    cols[3].caption(f"{prefill['tokens']} tokens · {prefill['tokens_per_s']:,.0f} tokens/s" if prefill else "")
    cols[4].metric("Decode, tokens/s", f"{decode['tokens_per_s']:,.0f}" if decode else "-",
                   help="greedy generation at batch 1 with a key-value cache")
    noisy = any(e.get("noisy") for e in record["latency"])
    cols[4].caption((f"{decode['tokens']} tokens in {decode['median_ms']:.1f} ms" if decode else "")
                    + (" · :orange[noisy]" if noisy else ""))
    if floor_badge(decode):  # how far from reading each weight once at the machine's memory bandwidth
        cols[4].caption(floor_badge(decode), help=floor_text(decode))


@st.cache_resource(max_entries=4, show_spinner=False)
def _language_model(weights_path: str):
    from compression.store.artifacts import load_run_model
    return load_run_model(weights_path)


def sample_panel(record: dict) -> None:
    """A prompt box and the model's completion (greedy, or sampled with a seed): what a language model writes."""
    from compression.text.generate import generate
    st.subheader("Sample")
    prompt = st.text_area("Prompt", "The for statement", key=f"prompt-{record['run_id']}", height=80)
    context = int(record.get("context") or (record.get("config") or {}).get("context") or 128)
    c1, c2, c3 = st.columns(3)
    tokens = c1.number_input("New tokens", 1, context - 1, min(80, context - 1), key=f"tokens-{record['run_id']}",
                             help=f"this model reads at most {context} tokens: the prompt's last ones make room")
    temperature = c2.number_input("Temperature", 0.0, 2.0, 0.0, 0.1, key=f"temperature-{record['run_id']}",
                                  help="0: greedy (the same text every time); above 0: sampled, with the seed")
    seed = c3.number_input("Seed", 0, 10_000, 0, key=f"sample-seed-{record['run_id']}")
    if st.button("Generate", key=f"generate-{record['run_id']}"):
        try:
            run = get_store().get_run(record["run_id"])
            model = _language_model(run["weights_path"])
            completion = generate(model, prompt, int(tokens), float(temperature), int(seed),
                                  run["config"].get("context"))
        except LabError as err:
            st.error(str(err))
        else:
            st.code(prompt + completion, language=None, wrap_lines=True)  # as written: no Markdown in it
            seen = context - int(tokens)
            if len(model.tokenizer.encode(prompt)) > seen:
                st.caption(f"The model saw only the prompt's last {seen} tokens: its context is {context}, and "
                           f"{int(tokens)} of them are for the new text.")


def fair_comparisons(text_records: list[dict]) -> None:
    """Each fine-tuned run in words, its fair control first: a child that trained N steps after its parent is
    compared with the parent trained N more steps the same way, then with the parent as stored (which a longer
    training alone may beat)."""
    by_id = {r["run_id"]: r for r in text_records}
    lines = [f"- **#{r['run_id']} {r.get('label')}**: {TEXT_TASK.quality_change(r, by_id[r['parent_id']])[0]}"
             for r in text_records if r.get("control_perplexity") is not None and r.get("parent_id") in by_id]
    if lines:
        st.markdown("**Fine-tuned runs against their fair control** (the parent trained as long)\n" + "\n".join(lines))


def text_compare(text_records: list[dict]) -> None:
    """The Compare page for language-model runs: a cost and a quality axis, the chart, the table, what changed."""
    t1, t2 = st.columns(2)
    cost = t1.selectbox("Cost axis", list(TEXT_COST_AXES), format_func=TEXT_COST_AXES.get)
    quality = t2.selectbox("Quality axis", list(QUALITY_AXES), format_func=QUALITY_AXES.get,
                           help="bits per byte compare models with different tokenizers; perplexity does not")
    frame = text_frame(text_records)
    plot(perplexity_chart(frame, cost, quality), "compare-text-chart")
    fair_comparisons(text_records)
    st.dataframe(frame.drop(columns=["parent_id"]), hide_index=True,
                 column_config={"run_id": st.column_config.NumberColumn("id", format="%d"),
                                "perplexity": st.column_config.NumberColumn(format="%.2f"),
                                "ppl_lo": st.column_config.NumberColumn("CI low", format="%.2f"),
                                "ppl_hi": st.column_config.NumberColumn("CI high", format="%.2f"),
                                "bits_per_byte": st.column_config.NumberColumn(format="%.3f"),
                                "next_token_accuracy": st.column_config.NumberColumn(format="percent"),
                                "decode_tokens_per_s": st.column_config.NumberColumn("decode tokens/s",
                                                                                     format="%.0f"),
                                "vs_control": st.column_config.TextColumn(
                                    "vs its fair control", help="a fine-tuned run against its parent trained as "
                                    "long (paired over the same test windows, 95% CI)")})
    hf_download(text_records)  # a run of an hf: model as a Hugging Face folder
    text_behaviour_section(text_records)
