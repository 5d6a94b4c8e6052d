"""The playground page (Gradio): sliders per expert, base vs soup answers streamed side by side, score bars,
"Find my weights" and "Export". Every handler shows a SoupsError as a message on the page, never a trace.

Launch: `soups playground` (soups/cli/playground_cmds.py), or `launch(Playground(), port=7860)`.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
from pathlib import Path

from soups.errors import SoupsError
from soups.playground.session import Playground, Settings
from soups.playground.view import CSS, profile_html, scores_html, status_html

log = logging.getLogger(__name__)

DEFAULT_PROMPT = "Why is the sky blue?"
SLIDER_MAX = 2.0
SCORE_EVERY_S = 0.5  # recompute the score bars at most this often while tokens stream
STREAM_EVERY_S = 0.25  # send streamed text to the page at most this often (each update costs Gradio and the browser)
INTRO = (
    "# soups playground\n"
    "Move a slider: the soup (the experts' LoRA deltas summed by your weights, rebuilt in memory) answers again, "
    "next to the base model. Bars: held-out scores per dimension (bold: the ones your soup declares). "
    "Tick **statements** to ask the soup as the paper does: its dimensions' preference statements appended to "
    "the prompt. **Find my weights** asks you to pick the better of two answers a few times and sets the sliders; "
    "**Export** gives the recipe and the `soups merge` command."
)


def _message(e: Exception) -> str:
    return " ".join(str(e).split())


def _takes_rank(name: str) -> bool:
    from soups.merge.methods import get_method

    return "rank" in get_method(name).params.model_fields


def _page_methods() -> dict[str, str]:
    """Methods the page can set (no parameter other than a rank), with their labels."""
    from soups.merge.methods import METHODS

    return {name: m.label or m.help for name, m in METHODS.items()
            if set(n for n, f in m.params.model_fields.items() if f.is_required()) <= {"rank"}}


def build_app(pg: Playground, *, weights: list[float] | None = None, rounds: int = 10, pool: str | None = None,
              seed: int | None = None, statements: bool = False):
    """The gr.Blocks page over a loaded Playground (`statements`: the box starts ticked)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from soups.playground.ask_flow import AskSession
    from soups.playground.export import answers_jsonl, generate_command, merge_command, recipe_yaml

    slots = pg.slots
    n = len(slots)
    start = weights if weights is not None else [1.0] * n
    max_rank = max(1, sum(s.adapter.max_rank for s in pg.soup.loaded))
    methods = _page_methods()
    finished = itertools.count(1)  # numbers the answers that ran to their end (the status line's data-answer)

    def settings_of(values) -> Settings:
        w, (normalize, method, rank, statements) = values[:n], values[n:]
        return Settings(tuple(float(v) if s.ok else 0.0 for v, s in zip(w, slots)), bool(normalize), str(method),
                        int(rank) if rank else None, bool(statements))

    def soup_line(state, said: list[str]) -> str:
        mix = " · ".join(f"{k} {v:.2f}" for k, v in state.weights.items())
        ms = 1000 * state.seconds
        line = f"soup: {state.method}, adapter rank {state.rank}: {mix} (rebuilt in memory in {ms:.0f} ms)"
        return line + (f"\n\nasked with its statements: *{' '.join(said)}*" if said else "")

    def declared(settings: Settings) -> set[str]:
        return {s.dimension for s, w in zip(slots, settings.weights) if s.ok and w != 0}

    def left_out(values) -> str:
        """Experts with a weight that failed to load (e.g. replaced on disk by a broken file)."""
        failed = [s.error for s, w in zip(slots, values[:n]) if s.error and w]
        return ("left out: " + " | ".join(failed)) if failed else ""

    def run(prompt, *values):
        """Rebuild the soup and stream both answers; outputs: base, soup, base bars, soup bars, status, soup info."""
        try:
            settings = settings_of(values)
            dims = declared(settings)
            said = pg.statements(settings) if settings.statements else []
            last_scores = last_sent = 0.0
            base_bars = soup_bars = gr.update()
            update = None
            sent: dict[str, object] = {}

            def changed(key: str, value):  # what the page already shows is not sent again
                if sent.get(key) == value:
                    return gr.update()
                sent[key] = value
                return value

            for update in pg.answer(prompt, settings):
                if update.preempted:
                    return
                now = time.perf_counter()
                done = all(update.done.values())
                first = "soup" not in sent and update.tokens.get("soup", 0) > 0
                if not (done or first or now - last_sent >= STREAM_EVERY_S):
                    continue  # tokens that come faster than the page repaints go out with the next update
                last_sent = now
                if now - last_scores > SCORE_EVERY_S or done:
                    last_scores = now
                    base_bars = scores_html(pg.scores(update.texts["base"]), dims)
                    soup_bars = scores_html(pg.scores(update.texts["soup"]), dims)
                yield (changed("base", update.texts["base"]), changed("soup", update.texts["soup"]),
                       base_bars, soup_bars, changed("busy", status_html("answering…")) if not done else gr.update(),
                       changed("line", soup_line(pg.soup.state, said)))
                base_bars = soup_bars = gr.update()
            if update is not None:
                took = f"soup: first token {update.first_token_s.get('soup', 0):.2f} s, " \
                       f"{update.tokens['soup']} tokens in {update.elapsed:.2f} s"
                failed = left_out(values)
                message = status_html(failed or took, error=bool(failed), answer=next(finished))
                yield (gr.update(), gr.update(), gr.update(), gr.update(), message, gr.update())
        except SoupsError as e:
            message = " ".join(m for m in (_message(e), left_out(values)) if m)
            yield (gr.update(), "", gr.update(), "", status_html(message, error=True), gr.update())
        except Exception as e:  # noqa: BLE001 - a bug: the page says so, the terminal has the traceback
            log.exception("playground: answering failed")
            yield (gr.update(), "", gr.update(), "", status_html(f"internal error: {_message(e)}", error=True),
                   gr.update())

    def ask_start():
        try:
            session = AskSession(pg.dimensions(), rounds=rounds, pool=pool, seed=seed)
        except SoupsError as e:
            return (None, gr.update(visible=False), status_html(_message(e), error=True), "", "", "", gr.update())
        return (session, gr.update(visible=True), *_question(session), "")

    def _question(session):
        q = session.question()
        pct = 100 * (q.number - 1) / q.rounds
        bar = (f'<div id="ask-progress" data-number="{q.number}" data-rounds="{q.rounds}">Question {q.number} of '
               f'{q.rounds}<div class="soups-bar"><span class="track" style="grid-column: 1 / 4">'
               f'<span class="fill" style="width:{pct:.0f}%"></span></span></div></div>')
        return bar, f"**Prompt:** {q.prompt}", q.a, q.b

    def ask_choose(choice, session):
        """Record a choice; after the last one, fit and move the sliders (the `moved` flag chains the answer)."""
        keep = [gr.update() for _ in slots]
        if session is None:
            return (None, gr.update(), status_html("press “Find my weights” first", error=True), "", "", "", "",
                    False, *keep)
        try:
            session.answer(choice)
            if not session.done:
                return (session, gr.update(), *_question(session), "", False, *keep)
            profile = session.profile()
        except SoupsError as e:
            return (session, gr.update(), status_html(_message(e), error=True), "", "", "", "", False, *keep)
        mw = profile["merge_weights"]
        moved = [gr.update(value=round(mw.get(s.dimension, 0.0), 2)) if s.ok else gr.update() for s in slots]
        note = "" if not session.exhausted else "The pool ran out of questions. "
        return (session, gr.update(visible=False), status_html(note + "Done: your weights are set."), "", "", "",
                profile_html(profile), True, *moved)

    def run_if_moved(moved, prompt, *values):
        if moved:
            yield from run(prompt, *values)

    def export(session, *values):
        try:
            settings = settings_of(values)
            soup = pg.soup_spec(settings)
            yaml_text, command = recipe_yaml(soup, settings.statements), merge_command(soup)
            ask = generate_command(statements=settings.statements)
        except SoupsError as e:
            return gr.update(), gr.update(), gr.update(), gr.update(), status_html(_message(e), error=True)
        folder = Path(tempfile.mkdtemp(prefix="soups-playground-export-"))
        files = [folder / "recipe.yaml"]
        files[0].write_text(yaml_text)
        for name, text in (("merge_command.txt", command), ("generate_command.txt", ask)):
            (folder / name).write_text(text + "\n")
            files.append(folder / name)
        if pg.history:
            (folder / "answers.jsonl").write_text(answers_jsonl(pg.history))
            files.append(folder / "answers.jsonl")
        if session is not None and session.records:
            (folder / "choices.jsonl").write_text(answers_jsonl(session.records))
            files.append(folder / "choices.jsonl")
        return yaml_text, command, ask, [str(f) for f in files], status_html(f"exported {len(files)} files")

    with gr.Blocks(title="soups playground", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        if pg.soup.errors:
            gr.HTML(status_html("Some experts failed to load and are left out: " + " | ".join(pg.soup.errors),
                                error=True), elem_id="load-errors")
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                sliders = []
                for slot, v in zip(slots, start):
                    info = pg.describe(slot.dimension) if slot.ok else f"failed to load: {slot.error}"
                    sliders.append(gr.Slider(0, SLIDER_MAX, value=float(v) if slot.ok else 0.0, step=0.05,
                                             label=slot.name, info=info, interactive=slot.ok,
                                             elem_id=f"w-{slot.name}"))
                normalize = gr.Checkbox(True, label="normalize (w = v / sum v)", elem_id="normalize")
                method = gr.Radio(list(methods), value="exact", label="method", elem_id="method",
                                  info=" · ".join(f"{k}: {v}" for k, v in methods.items()))
                rank = gr.Slider(1, max_rank, value=min(8, max_rank), step=1, label="rank", visible=False,
                                 elem_id="rank")
                statements = gr.Checkbox(bool(statements), label="statements", elem_id="statements",
                                         info="ask the soup with the preference statements of its dimensions "
                                              "(weight > 0) appended to the prompt, as the paper does")
                soup_info = gr.Markdown(elem_id="soup-info")
            with gr.Column(scale=3):
                prompt = gr.Textbox(DEFAULT_PROMPT, label="prompt", lines=2, elem_id="prompt")
                go = gr.Button("Answer", variant="primary", elem_id="go")
                status = gr.HTML(elem_id="status")
                with gr.Row(equal_height=True):
                    with gr.Column():
                        base_box = gr.Textbox(label="base", lines=10, max_lines=14, interactive=False,
                                              elem_id="base-answer")
                        base_bars = gr.HTML(elem_id="base-scores")
                    with gr.Column():
                        soup_box = gr.Textbox(label="soup", lines=10, max_lines=14, interactive=False,
                                              elem_id="soup-answer")
                        soup_bars = gr.HTML(elem_id="soup-scores")
        with gr.Row():
            with gr.Column():
                gr.Markdown("## Find my weights")
                ask_state = gr.State(None)
                ask_go = gr.Button(f"Find my weights ({rounds} questions)", elem_id="ask-start")
                with gr.Group(visible=False) as ask_box:
                    ask_progress = gr.HTML(elem_id="ask-progress-box")
                    ask_prompt = gr.Markdown(elem_id="ask-prompt")
                    with gr.Row(equal_height=True):
                        ask_a = gr.Textbox(label="A", lines=5, interactive=False, elem_id="ask-a")
                        ask_b = gr.Textbox(label="B", lines=5, interactive=False, elem_id="ask-b")
                    with gr.Row():
                        buttons = {c: gr.Button(label, elem_id=f"choose-{c}", size="sm") for c, label in
                                   (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("skip", "Skip"))}
                ask_result = gr.HTML(elem_id="ask-result")
            with gr.Column():
                gr.Markdown("## Export")
                export_go = gr.Button("Export recipe, command and answers", elem_id="export")
                recipe_box = gr.Code(language="yaml", label="recipe (merge_recipes/*.yaml)", interactive=False,
                                     elem_id="recipe-yaml")
                command_box = gr.Textbox(label="soups merge command", interactive=False, elem_id="merge-command",
                                         buttons=["copy"])
                generate_box = gr.Textbox(label="then ask it (soups generate; --statements when ticked)",
                                          interactive=False, elem_id="generate-command", buttons=["copy"])
                downloads = gr.File(label="downloads", file_count="multiple", interactive=False,
                                    elem_id="downloads")
        controls = [*sliders, normalize, method, rank, statements]
        outputs = [base_box, soup_box, base_bars, soup_bars, status, soup_info]
        run_kw = dict(fn=run, inputs=[prompt, *controls], outputs=outputs, show_progress="hidden",
                      concurrency_limit=None, trigger_mode="always_last")
        go.click(**run_kw)
        prompt.submit(**run_kw)
        demo.load(**run_kw)
        for s in sliders:
            s.release(**run_kw)
        rank.release(**run_kw)
        normalize.input(**run_kw)
        statements.input(**run_kw)
        method.input(lambda m: gr.update(visible=_takes_rank(m)), inputs=method, outputs=rank,
                     show_progress="hidden").then(**run_kw)

        ask_go.click(ask_start, outputs=[ask_state, ask_box, ask_progress, ask_prompt, ask_a, ask_b, ask_result],
                     show_progress="hidden")
        moved = gr.State(False)
        for choice, button in buttons.items():
            button.click(lambda s, c=choice: ask_choose(c, s), inputs=[ask_state],
                         outputs=[ask_state, ask_box, ask_progress, ask_prompt, ask_a, ask_b, ask_result, moved,
                                  *sliders], show_progress="hidden").then(
                run_if_moved, inputs=[moved, prompt, *controls], outputs=outputs, show_progress="hidden",
                concurrency_limit=None)
        export_go.click(export, inputs=[ask_state, *controls],
                        outputs=[recipe_box, command_box, generate_box, downloads, status], show_progress="hidden")
    return demo


def launch(pg: Playground, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **app_kwargs):
    """Serve the page on host:port (127.0.0.1 by default: only this machine can reach it)."""
    import gradio as gr

    demo = build_app(pg, **app_kwargs)
    demo.queue(default_concurrency_limit=None)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "SFMono-Regular", "monospace"])  # no web fonts: offline
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=True, ssr_mode=False,
                show_error=False, theme=theme, css=CSS, footer_links=[], inbrowser=False)
    return demo
