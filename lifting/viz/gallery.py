"""A static HTML gallery of rendered images: one self-contained folder that opens from disk.

    OUT/index.html      page + inline CSS/JS + the gallery data (inline JSON: a page opened
                        from file:// cannot fetch a side file)
    OUT/images/KEY.png  the per-image panels (lifting.viz.panel)

Filters (category, QA family, object status, rejection reason, key search) and the page
number live in the URL fragment, e.g. `index.html#category=chair&family=distance`, so a
filtered view can be bookmarked, shared, or opened by a headless browser.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

from lifting.evaluate import record_box
from lifting.viz.wireframe import category_color, color_hex

#: QA questions embedded per image (the PNG shows them too); keeps index.html small.
MAX_QUESTIONS_PER_ENTRY = 30


def gallery_entry(record: dict, questions: list[dict], png_rel: str | None) -> dict:
    """JSON-ready gallery entry of one image.

    Args:
        record: image record; questions: its QA question dicts; png_rel: the panel's path
            relative to the gallery folder (None when not rendered).
    """
    objects = []
    for i, o in enumerate(record.get("objects") or []):
        box = record_box(o) if o.get("status", "kept") == "kept" else None
        objects.append({
            "i": i + 1,
            "id": o.get("object_id"),
            "category": str(o.get("category", "?")),
            "kept": box is not None,
            "reason": None if box is not None else (o.get("reason") or "no_box3d"),
            "dims": None if box is None else [round(float(v), 3) for v in box.dimensions],
            "z": None if box is None else round(float(box.center_cam[2]), 3),
            "proj_iou": (o.get("quality") or {}).get("proj_iou"),
        })
    fams = Counter(str(q.get("family", "?")) for q in questions)
    return {
        "key": str(record.get("key")),
        "png": png_rel,
        "source": record.get("source"),
        "status": record.get("status", "lifted"),
        "reason": record.get("reason"),
        "size": [record.get("width"), record.get("height")],
        "objects": objects,
        "families": dict(fams),
        "qa": [{"family": q.get("family"), "form": q.get("form"), "q": q.get("question"), "a": q.get("answer_text")}
               for q in questions[:MAX_QUESTIONS_PER_ENTRY]],
        "n_qa": len(questions),
    }


def evaluation_html(report: dict | None) -> str:
    """HTML block of a `lift3d eval` report for the gallery header: the 3D box figures and,
    when present, the QA truth against GT (per family, and a few false answers)."""
    if not report:
        return ""
    esc = html.escape

    def num(v):
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else esc(str(v)))

    parts = ['<div id="evaluation">']
    keys = [k for k in ("gt_objects", "mean_iou3d", "kept_iou3d", "recall_iou25", "recall_iou50",
                        "median_center_err_m") if k in report]
    if keys:
        parts.append("<b>3D boxes vs GT</b> " + " · ".join(f"{esc(k)} {num(report[k])}" for k in keys))
    q = report.get("qa_truth")
    if q:
        cols = ("questions", "true", "false", "ambiguous", "unmappable", "binary_truth_rate", "numeric_within_25pct",
                "clock_exact")
        head = "".join(f"<th>{esc(c)}</th>" for c in cols)
        rows = [f"<tr><td>all</td>{''.join(f'<td>{num(q.get(c))}</td>' for c in cols)}</tr>"]
        for fam, f in (q.get("per_family") or {}).items():
            rows.append(f"<tr><td>{esc(fam)}</td>{''.join(f'<td>{num(f.get(c))}</td>' for c in cols)}</tr>")
        parts.append(f"<details><summary><b>QA truth vs GT</b>: {num(q.get('truth_rate'))} of decided answers true "
                     f"({num(q.get('questions_per_image'))} questions per image)</summary>"
                     f"<table><tr><th>family</th>{head}</tr>{''.join(rows)}</table>")
        ex = q.get("false_examples") or []
        if ex:
            parts.append("<ol>" + "".join(f"<li>{esc(str(e.get('question')))} — answered {esc(json.dumps(e.get('answer')))}, "
                                          f"GT {esc(json.dumps(e.get('gt')))}</li>" for e in ex[:10]) + "</ol>")
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def write_gallery(out_dir: str | Path, entries: list[dict], title: str = "lift3d gallery",
                  page_size: int = 48, evaluation: dict | None = None) -> Path:
    """Write OUT/index.html for `entries` (from `gallery_entry`); returns its path.
    `evaluation`: a `lift3d eval` report (with `qa_truth` when measured), shown in the header."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cats = Counter(o["category"] for e in entries for o in e["objects"])
    colors = {c: color_hex(category_color(c)) for c in cats}
    data = {"title": title, "entries": entries, "colors": colors, "page_size": int(page_size)}
    blob = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    page = (_TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__EVAL__", evaluation_html(evaluation))
            .replace("__DATA__", blob))
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px/1.35 system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}
header{background:#1f2937;color:#fff;padding:10px 16px}
header h1{font-size:18px;margin:0 0 4px}
#summary{font-size:12px;color:#cbd5e1}
#evaluation{font-size:12px;color:#e5e7eb;margin-top:4px}
#evaluation table{border-collapse:collapse;margin:4px 0}
#evaluation td,#evaluation th{padding:1px 6px;border-bottom:1px solid #374151;text-align:right}
#evaluation td:first-child{text-align:left}
#controls{display:flex;flex-wrap:wrap;gap:10px;padding:10px 16px;background:#fff;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
#controls label{font-size:12px;color:#555}
#controls select,#controls input{margin-left:4px}
#count{font-weight:600;align-self:center}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px;padding:12px 16px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;overflow:hidden}
.card img{width:100%;display:block;background:#ddd;min-height:120px}
.card .body{padding:6px 10px}
.key{font-family:monospace;font-size:12px;color:#333}
.chip{display:inline-block;padding:0 6px;margin:2px 3px 2px 0;border-radius:9px;font-size:11px;color:#fff}
.fam{background:#e5e7eb;color:#333}
.rejected{margin:4px 0 0;padding-left:18px;color:#a11;font-size:12px}
.status-rejected{border-color:#d66}
details{font-size:12px;margin-top:4px}
details li{margin-bottom:3px}
#pager{padding:8px 16px 24px}
#empty{padding:24px 16px;color:#666}
</style></head>
<body>
<header><h1>__TITLE__</h1><div id="summary"></div>__EVAL__</header>
<div id="controls">
<label>category<select id="f-category"></select></label>
<label>QA family<select id="f-family"></select></label>
<label>objects<select id="f-status">
<option value="">all images</option><option value="has_rejected">with rejected objects</option>
<option value="all_kept">all objects kept</option><option value="image_rejected">rejected images</option></select></label>
<label>rejection reason<select id="f-reason"></select></label>
<label>key<input id="f-search" type="search" placeholder="substring"></label>
<span id="count"></span>
</div>
<div id="grid"></div><div id="empty" hidden>No image matches these filters.</div>
<div id="pager"></div>
<script id="gallery-data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("gallery-data").textContent);
const E = DATA.entries;
const FIELDS = ["category", "family", "status", "reason", "q", "page"];
function esc(s){return String(s==null?"":s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
function counts(f){const m=new Map();for(const e of E)for(const k of f(e))m.set(k,(m.get(k)||0)+1);return [...m.entries()].sort((a,b)=>b[1]-a[1]||(a[0]<b[0]?-1:1));}
function fill(id,pairs,label){const s=document.getElementById(id);s.innerHTML='<option value="">'+label+'</option>'+pairs.map(([k,n])=>'<option value="'+esc(k)+'">'+esc(k)+' ('+n+')</option>').join("");}
fill("f-category",counts(e=>new Set(e.objects.map(o=>o.category))),"all");
fill("f-family",counts(e=>Object.keys(e.families)),"all");
fill("f-reason",counts(e=>new Set(e.objects.filter(o=>!o.kept).map(o=>o.reason).concat(e.status==="rejected"&&e.reason?[e.reason]:[]))),"any");
function readState(){const p=new URLSearchParams(location.hash.replace(/^#/,""));const s={};for(const f of FIELDS)s[f]=p.get(f)||"";s.page=Math.max(1,parseInt(s.page||"1",10)||1);return s;}
function writeState(s){const p=new URLSearchParams();for(const f of FIELDS)if(s[f]&&!(f==="page"&&s[f]===1))p.set(f,s[f]);const h=p.toString();history.replaceState(null,"",h?"#"+h:location.pathname+location.search);}
function matches(e,s){
 if(s.category&&!e.objects.some(o=>o.category===s.category))return false;
 if(s.family&&!(s.family in e.families))return false;
 if(s.status==="has_rejected"&&!e.objects.some(o=>!o.kept))return false;
 if(s.status==="all_kept"&&(e.objects.some(o=>!o.kept)||e.status==="rejected"))return false;
 if(s.status==="image_rejected"&&e.status!=="rejected")return false;
 if(s.reason&&!(e.objects.some(o=>!o.kept&&o.reason===s.reason)||(e.status==="rejected"&&e.reason===s.reason)))return false;
 if(s.q&&e.key.toLowerCase().indexOf(s.q.toLowerCase())<0)return false;
 return true;}
function card(e){
 const cats=new Map();for(const o of e.objects)if(o.kept)cats.set(o.category,(cats.get(o.category)||0)+1);
 const chips=[...cats.entries()].map(([c,n])=>'<span class="chip" style="background:'+(DATA.colors[c]||"#666")+'">'+esc(c)+(n>1?" &times;"+n:"")+'</span>').join("");
 const fams=Object.entries(e.families).map(([f,n])=>'<span class="chip fam">'+esc(f)+" "+n+'</span>').join("");
 const rej=e.objects.filter(o=>!o.kept).map(o=>'<li class="rej" data-reason="'+esc(o.reason)+'">#'+o.i+" "+esc(o.category)+": "+esc(o.reason)+'</li>').join("");
 const qa=e.qa.map(q=>'<li><b>['+esc(q.family)+']</b> '+esc(q.q)+'<br>&rarr; '+esc(q.a)+'</li>').join("");
 const img=e.png?'<a href="'+esc(e.png)+'" target="_blank"><img loading="lazy" src="'+esc(e.png)+'" alt="'+esc(e.key)+'"></a>':"";
 return '<div class="card'+(e.status==="rejected"?" status-rejected":"")+'" data-key="'+esc(e.key)+'">'+img+'<div class="body"><div class="key">'+esc(e.key)
  +(e.status==="rejected"?' &mdash; <b style="color:#a11">rejected: '+esc(e.reason)+'</b>':"")+'</div><div>'+chips+'</div><div>'+fams+'</div>'
  +(rej?'<ul class="rejected">'+rej+'</ul>':"")+(qa?'<details><summary>'+e.n_qa+' QA pairs</summary><ol>'+qa+'</ol></details>':"")+'</div></div>';}
function render(){
 const s=readState();
 for(const f of ["category","family","status","reason"])document.getElementById("f-"+f).value=s[f];
 document.getElementById("f-search").value=s.q;
 const hit=E.filter(e=>matches(e,s));const ps=DATA.page_size;const pages=Math.max(1,Math.ceil(hit.length/ps));
 if(s.page>pages)s.page=pages;
 const shown=hit.slice((s.page-1)*ps,s.page*ps);
 document.getElementById("grid").innerHTML=shown.map(card).join("");
 document.getElementById("empty").hidden=hit.length>0;
 document.getElementById("count").textContent=hit.length+" of "+E.length+" images";
 document.getElementById("count").dataset.matching=hit.length;
 const pg=document.getElementById("pager");
 pg.innerHTML=pages>1?'<button id="prev"'+(s.page<=1?" disabled":"")+'>&larr; prev</button> page '+s.page+" / "+pages+' <button id="next"'+(s.page>=pages?" disabled":"")+'>next &rarr;</button>':"";
 if(pages>1){document.getElementById("prev").onclick=()=>{s.page--;writeState(s);render();scrollTo(0,0);};
  document.getElementById("next").onclick=()=>{s.page++;writeState(s);render();scrollTo(0,0);};}}
function onFilter(){const s=readState();for(const f of ["category","family","status","reason"])s[f]=document.getElementById("f-"+f).value;
 s.q=document.getElementById("f-search").value;s.page=1;writeState(s);render();}
for(const f of ["category","family","status","reason"])document.getElementById("f-"+f).addEventListener("change",onFilter);
document.getElementById("f-search").addEventListener("input",onFilter);
window.addEventListener("hashchange",render);
const nObj=E.reduce((a,e)=>a+e.objects.length,0),nRej=E.reduce((a,e)=>a+e.objects.filter(o=>!o.kept).length,0);
document.getElementById("summary").textContent=E.length+" images · "+nObj+" objects ("+nRej+" rejected) · "+E.reduce((a,e)=>a+e.n_qa,0)+" QA pairs";
render();
</script></body></html>
"""
