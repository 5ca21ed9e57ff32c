"""``GET /``: one self-contained HTML page to try the model by hand (no external assets).

Choose or drop an image; the page posts it to ``/predict`` as a multipart upload (field
``image``, the form a browser sends) and draws the top classes and their probabilities, or, for
a multi-label run, every label's probability with the run's threshold marked.
"""

from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>archbench serve: {title}</title>
<style>
  body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 40em;
         color: #222; padding: 0 1em; }}
  h1 {{ font-size: 1.3em; margin-bottom: 0.2em; }}
  .meta {{ color: #666; margin-top: 0; }}
  #drop {{ display: block; border: 2px dashed #999; border-radius: 8px; padding: 1.5em;
          text-align: center; cursor: pointer; }}
  #drop.over {{ border-color: #2a6; background: #efe; }}
  #preview {{ width: 128px; height: auto; image-rendering: pixelated;
             display: none; margin: 1em auto 0; }}
  table {{ width: 100%; border-collapse: collapse; margin-top: 1em; }}
  td {{ padding: 0.2em 0.4em; }}
  td.name {{ width: 30%; }} td.p {{ width: 12%; text-align: right;
                                    font-variant-numeric: tabular-nums; }}
  .bar {{ background: #2a6; height: 1em; border-radius: 2px; }}
  .below {{ background: #bbb; }}
  #status {{ margin-top: 1em; min-height: 1.4em; font-size: 1.15em; font-weight: 600; }}
  .error {{ color: #b00; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="meta">{subtitle}</p>
<form id="form" action="predict" method="post" enctype="multipart/form-data">
  <label id="drop" for="file">Choose an image, or drop one here
    <input id="file" name="image" type="file" accept="image/*" hidden>
    <img id="preview" alt="the chosen image">
  </label>
</form>
<div id="status"></div>
<table id="result"></table>
<script>
const MULTILABEL = {multilabel};
const TOP = 5;
const form = document.getElementById("form"), file = document.getElementById("file");
const drop = document.getElementById("drop"), preview = document.getElementById("preview");
const status = document.getElementById("status"), result = document.getElementById("result");

function row(name, p, below) {{
  const tr = document.createElement("tr");
  const width = (100 * p).toFixed(1);
  const bar = `<div class="bar${{below ? " below" : ""}}" style="width:${{width}}%">`;
  tr.innerHTML = `<td class="name"></td><td class="p">${{(100 * p).toFixed(1)}}%</td>` +
                 `<td>${{bar}}</div></td>`;
  tr.firstChild.textContent = name;
  return tr;
}}

async function predict(chosen) {{
  preview.src = URL.createObjectURL(chosen);
  preview.style.display = "block";
  status.className = ""; status.textContent = "asking the model...";
  result.replaceChildren();
  const body = new FormData();
  body.append("image", chosen, chosen.name);
  try {{
    const response = await fetch(form.action, {{ method: "POST", body }});
    const answer = await response.json();
    if (!response.ok) throw new Error(`${{response.status}}: ${{answer.detail}}`);
    const ranked = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    if (MULTILABEL) {{
      status.textContent = answer.labels.length
        ? `labels: ${{answer.labels.join(", ")}} (threshold ${{answer.threshold}})`
        : `no label reaches the threshold ${{answer.threshold}}`;
      ranked.forEach(([n, p]) => result.append(row(n, p, p < answer.threshold)));
    }} else {{
      status.textContent = `label: ${{answer.label}}`;
      ranked.slice(0, TOP).forEach(([n, p]) => result.append(row(n, p, false)));
    }}
  }} catch (error) {{
    status.className = "error"; status.textContent = `failed: ${{error.message}}`;
  }}
}}

file.addEventListener("change", () => file.files.length && predict(file.files[0]));
form.addEventListener("submit", (event) => event.preventDefault());
["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {{
  event.preventDefault(); drop.classList.add("over");
}}));
["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, (event) => {{
  event.preventDefault(); drop.classList.remove("over");
}}));
drop.addEventListener("drop", (event) => {{
  const dropped = event.dataTransfer.files;
  if (dropped.length) predict(dropped[0]);
}});
</script>
</body>
</html>
"""


def render_page(
    *, network: str, run_name: str, classes: list[str], input_size, multilabel: bool
) -> str:
    """The page for one served run; every interpolated text is HTML-escaped."""
    kind = "multi-label" if multilabel else "single-label"
    shape = "x".join(str(v) for v in input_size)
    subtitle = f"run {run_name}: {kind}, {len(classes)} classes, input {shape}"
    return PAGE.format(
        title=html.escape(network),
        subtitle=html.escape(subtitle),
        multilabel="true" if multilabel else "false",
    )
