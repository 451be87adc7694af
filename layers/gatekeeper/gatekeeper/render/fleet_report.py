"""The fleet report: every recorded verdict at once, as one self-contained HTML page and a
terminal summary (``gatekeeper report``).

:func:`summarize` turns plain data (the images' current verdicts, the verdict changes, the
policy's exceptions) into a :class:`Fleet`; :func:`html_report` and :func:`text_summary`
render it. The page carries everything inline (CSS, SVG charts drawn here, a small script), so
that it opens from a mail attachment or an S3 link with nothing to fetch. Every text on it
comes from outside (a repository name, a tag, a reason quoting a scanner) and is HTML-escaped.

The page's script checks what it draws once it has loaded (each chart holds the bars its
``data-bars`` says, each drawn with a size; the totals equal the per-repository counts) and
writes the outcome to ``<html data-checks=...>``, with any script error in ``data-errors``: a
headless browser's DOM says whether a person would see the report whole.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

from gatekeeper.domain.findings import InUse
from gatekeeper.domain.policy import PolicyException
from gatekeeper.render.markup import plain

STATES = ("QUARANTINED", "APPROVED_WITH_WARNINGS", "APPROVED", "PENDING")
COLORS = {"QUARANTINED": "#c62828", "APPROVED_WITH_WARNINGS": "#ef8f00",
          "APPROVED": "#2e7d32", "PENDING": "#78909c"}
TOP_BLOCKERS = 15
CALENDAR_MONTHS = 3


@dataclass(frozen=True)
class Image:
    """One image's current verdict, as the verdict table records it."""

    repository: str
    digest: str
    state: str
    tags: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    decided_at: str | None = None
    in_use: InUse | None = None
    exceptions_used: tuple[str, ...] = ()
    account: str | None = None
    console_url: str | None = None  # a plain link the reader may click (the ECR console)

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tags[0]}" if self.tags else \
            f"{self.repository}@{self.digest[:19]}"


@dataclass(frozen=True)
class Change:
    """One verdict change (a history item)."""

    repository: str
    digest: str
    decided_at: str
    state: str
    previous: str | None = None


@dataclass(frozen=True)
class ExceptionUse:
    """A policy exception and what the recorded verdicts say of it."""

    exception: PolicyException
    images: int  # current verdicts that applied it
    status: str  # used, unused, expiring, expired
    expires_on: str  # the last day it applies (as written)


@dataclass(frozen=True)
class Fleet:
    generated_at: datetime
    since: datetime
    policy_version: str
    totals: dict[str, int]
    repositories: list[tuple[str | None, str, dict[str, int]]]  # (account, repository, counts)
    quarantined: list[tuple[Image, tuple[str, ...]]]  # with the finding ids that block it
    blockers: list[tuple[str, int]]  # finding id, images it blocks
    timeline: list[tuple[str, dict[str, int]]]  # day, changes to each verdict
    exceptions: list[ExceptionUse]
    in_use_quarantined: list[Image]
    use_unknown: int  # images whose use no enhanced scan reported
    window_days: int = 14
    accounts: bool = False  # whether any record names its account
    changes: int = 0
    gone: int = 0  # deleted images, left out
    notes: list[str] = field(default_factory=list)


# A breach reason ends with its finding ids: "CRITICAL: 2 findings over the limit of 0
# (CVE-2021-44228, CVE-2023-4863 and 3 more)" (see gatekeeper.domain.verdict.Breach.describe).
_IDS = re.compile(r"\(([^()]*)\)\s*$")
_MORE = re.compile(r"\s+and \d+ more$")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*-[A-Za-z0-9][\w.:-]*$")


def blocking_ids(reasons: Iterable[str]) -> tuple[str, ...]:
    """The finding ids the reasons of a quarantine name (at most ten a reason are named)."""
    found: dict[str, None] = {}
    for reason in reasons:
        match = _IDS.search(reason)
        if match is None:
            continue
        for part in _MORE.sub("", match.group(1)).split(", "):
            if _ID.match(part.strip()):
                found[part.strip()] = None
    return tuple(found)


def _day(text: str | None) -> str | None:
    return text[:10] if text and len(text) >= 10 else None


def summarize(images: Iterable[Image], changes: Iterable[Change],
              exceptions: Sequence[PolicyException], *, now: datetime, since: datetime,
              policy_version: str, window_days: int = 14, gone: int = 0) -> Fleet:
    """The fleet as the report shows it."""
    images = sorted(images, key=lambda i: (i.repository, i.name, i.digest))
    totals = Counter(i.state for i in images)
    per_repo: dict[tuple[str | None, str], Counter[str]] = defaultdict(Counter)
    for image in images:
        per_repo[(image.account, image.repository)][image.state] += 1
    repositories = sorted(((a, r, dict(c)) for (a, r), c in per_repo.items()),
                          key=lambda row: (-row[2].get("QUARANTINED", 0), row[0] or "", row[1]))
    quarantined = [(i, blocking_ids(i.reasons)) for i in images if i.state == "QUARANTINED"]
    quarantined.sort(key=lambda q: (not (q[0].in_use and q[0].in_use.running),
                                    q[0].repository, q[0].name))
    blocked = Counter(found for _, ids in quarantined for found in ids)
    blockers = sorted(blocked.items(), key=lambda b: (-b[1], b[0]))[:TOP_BLOCKERS]

    days: dict[str, Counter[str]] = {}
    first = since.date()
    for offset in range((now.date() - first).days + 1):
        days[(first + timedelta(days=offset)).isoformat()] = Counter()
    counted = 0
    for change in changes:
        day = _day(change.decided_at)
        if day in days:
            days[day][change.state] += 1
            counted += 1

    used = Counter(e for i in images for e in set(i.exceptions_used))
    window = now + timedelta(days=window_days)
    rows = []
    for exception in exceptions:
        if not exception.active(now):
            status = "expired"
        elif exception.expires <= window:
            status = "expiring"
        else:
            status = "used" if used[exception.id] else "unused"
        rows.append(ExceptionUse(exception, used[exception.id], status,
                                 exception.expires_text or exception.expires.date().isoformat()))
    rows.sort(key=lambda r: (r.exception.expires, r.exception.id))
    return Fleet(
        generated_at=now, since=since, policy_version=policy_version,
        totals={s: totals[s] for s in STATES if totals[s]}
        | {s: n for s, n in totals.items() if s not in STATES},
        repositories=repositories, quarantined=quarantined, blockers=blockers,
        timeline=[(d, dict(c)) for d, c in days.items()], exceptions=rows,
        in_use_quarantined=[i for i, _ in quarantined if i.in_use and i.in_use.running],
        use_unknown=sum(1 for i in images if i.in_use is None), window_days=window_days,
        accounts=any(i.account for i in images), changes=counted, gone=gone)


# --- the terminal summary ------------------------------------------------------------------


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{state} {n}" for state, n in counts.items() if n) or "none"


def text_summary(fleet: Fleet) -> str:
    """A few lines for the terminal: what the page shows, in numbers."""
    images = sum(fleet.totals.values())
    lines = [f"Fleet report: {images} image(s), policy {fleet.policy_version}",
             f"  generated:       {fleet.generated_at.isoformat(timespec='seconds')}",
             f"  verdicts:        {_counts(fleet.totals)}"]
    width = max((len(r) for _, r, _ in fleet.repositories), default=0)
    for account, repository, counts in fleet.repositories:
        where = f"{account}/" if fleet.accounts and account else ""
        lines.append(f"    {where}{repository:<{width}}  {_counts(counts)}")
    lines.append(f"  quarantined:     {len(fleet.quarantined)}, of which IN USE "
                 f"{len(fleet.in_use_quarantined)} (use unknown: {fleet.use_unknown} image(s))")
    for image in fleet.in_use_quarantined:
        lines.append(f"    {image.name}: {image.in_use.describe() if image.in_use else ''}")
    if fleet.blockers:
        lines.append("  blocking most:   " + ", ".join(f"{i} ({n})" for i, n in fleet.blockers[:4]))
    statuses = Counter(e.status for e in fleet.exceptions)
    lines.append(f"  exceptions:      {len(fleet.exceptions)} ("
                 + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
                 if fleet.exceptions else "  exceptions:      none in the policy")
    for row in fleet.exceptions:
        if row.status in ("expiring", "expired"):
            lines.append(f"    {row.status:<8} {row.exception.id} on {row.expires_on} "
                         f"({row.exception.owner})")
    lines.append(f"  verdict changes: {fleet.changes} since "
                 f"{fleet.since.date().isoformat()}")
    if fleet.gone:
        lines.append(f"  ({fleet.gone} deleted image(s) left out)")
    return "\n".join(plain(line) for line in lines)  # no terminal control sequence


# --- the page ------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _bar_chart(rows: Sequence[tuple[str, Mapping[str, int]]], title: str, *,
               chart_id: str, label_width: int = 220, width: int = 760) -> str:
    """Horizontal stacked bars: one row per label, one segment per verdict."""
    row_height, top = 22, 6
    most = max((sum(c.values()) for _, c in rows), default=0) or 1
    scale = (width - label_width - 50) / most
    height = top * 2 + row_height * max(len(rows), 1)
    parts, bars = [], 0
    for index, (label, counts) in enumerate(rows):
        y = top + index * row_height
        parts.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">'
                     f'{_e(label[:40])}</text>')
        x = float(label_width)
        for state, count in counts.items():
            if not count:
                continue
            w = max(count * scale, 2.0)
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" '
                         f'height="{row_height - 6}" fill="{COLORS.get(state, "#555")}" '
                         f'data-state="{_e(state)}" data-count="{count}">'
                         f'<title>{_e(label)}: {count} {_e(state)}</title></rect>')
            x += w
            bars += 1
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}">{sum(counts.values())}</text>')
    return (f'<svg class="chart" id="{chart_id}" role="img" aria-label="{_e(title)}" '
            f'data-bars="{bars}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


def _timeline_chart(timeline: Sequence[tuple[str, Mapping[str, int]]], *, width: int = 760,
                    height: int = 180) -> str:
    """Vertical stacked bars: the verdict changes of each day."""
    left, bottom = 30, 20
    most = max((sum(c.values()) for _, c in timeline), default=0) or 1
    step = (width - left - 30) / max(len(timeline), 1)  # room for the last label
    scale = (height - bottom - 10) / most
    parts = [f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" '
             'stroke="#999"/>',
             f'<text x="{left - 4}" y="14" text-anchor="end">{most}</text>']
    bars = 0
    for index, (day, counts) in enumerate(timeline):
        x = left + index * step
        y = float(height - bottom)
        for state in STATES:
            count = counts.get(state, 0)
            if not count:
                continue
            h = count * scale
            y -= h
            parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" '
                         f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[state]}" data-state="{state}" data-count="{count}">'
                         f'<title>{_e(day)}: {count} to {state}</title></rect>')
            bars += 1
        if index % max(1, len(timeline) // 8) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 5}">{_e(day[5:])}</text>')
    return (f'<svg class="chart" id="chart-timeline" role="img" aria-label="verdict changes '
            f'per day" data-bars="{bars}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], table_id: str,
           empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{table_id}">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _badge(state: str) -> str:
    return f'<span class="badge" style="background:{COLORS.get(state, "#555")}">{_e(state)}</span>'


def _image_cell(image: Image) -> str:
    name = _e(image.name)
    if image.console_url and image.console_url.startswith("https://"):
        name = f'<a href="{_e(image.console_url)}" rel="noopener noreferrer">{name}</a>'
    return f'{name}<br><code>{_e(image.digest[:19])}</code>'


def _use(image: Image) -> str:
    if image.in_use is None:
        return '<span class="muted">unknown</span>'
    text = _e(image.in_use.describe())
    return f"<strong class=\"inuse\">{text}</strong>" if image.in_use.running else text


def _calendar(fleet: Fleet) -> str:
    """The months ahead, each day with the exceptions that stop applying after it."""
    ending: dict[str, list[ExceptionUse]] = defaultdict(list)
    for row in fleet.exceptions:
        ending[row.expires_on[:10]].append(row)
    today = fleet.generated_at.date()
    months = []
    year, month = today.year, today.month
    for _ in range(CALENDAR_MONTHS):
        first = datetime(year, month, 1).date()
        cells = ['<td></td>'] * first.weekday()
        day = first
        while day.month == month:
            found = ending.get(day.isoformat(), [])
            classes = ["day"] + (["today"] if day == today else [])
            title = ""
            if found:
                classes.append("expires")
                title = _e("; ".join(f"{r.exception.id} ({r.exception.owner}, {r.status})"
                                     for r in found))
            mark = f'<span class="n">{len(found)}</span>' if found else ""
            cells.append(f'<td class="{" ".join(classes)}" title="{title}" '
                         f'data-expiring="{len(found)}">{day.day}{mark}</td>')
            day += timedelta(days=1)
        weeks = ["".join(cells[i:i + 7]) for i in range(0, len(cells), 7)]
        months.append(f'<table class="month"><caption>{first.strftime("%B %Y")}</caption>'
                      "<tr>" + "".join(f"<th>{d}</th>" for d in "MTWTFSS") + "</tr>"
                      + "".join(f"<tr>{w}</tr>" for w in weeks) + "</table>")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f'<div class="calendar" id="calendar">{"".join(months)}</div>'


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.muted{color:#777}.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{padding:10px 16px;border-radius:6px;color:#fff;min-width:120px}
.tile b{display:block;font-size:26px}.badge{color:#fff;border-radius:3px;padding:1px 6px;
font-size:12px}table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
svg.chart text{font-size:12px;fill:#333}.inuse{color:#c62828}.alert{background:#fdecea;
border-left:4px solid #c62828;padding:8px 12px}.calendar{display:flex;gap:16px;flex-wrap:wrap}
.month td{width:26px;text-align:right;font-size:12px;padding:2px 4px}.month caption{font-weight:600}
.month td.expires{background:#ffe0b2;font-weight:600}.month td.today{outline:2px solid #1565c0}
.month .n{display:block;font-size:10px;color:#c62828}input{padding:4px;margin:4px 0;width:280px}
.legend span{margin-right:12px}.id{white-space:nowrap}
"""

_SCRIPT = """
(function(){
  var errors=[];
  window.addEventListener('error',function(e){errors.push(String(e.message));
    document.documentElement.setAttribute('data-errors',JSON.stringify(errors));});
  function check(){
    var problems=[],charts={};
    document.querySelectorAll('svg.chart').forEach(function(svg){
      var bars=svg.querySelectorAll('rect.bar'),box=svg.getBoundingClientRect(),drawn=0;
      bars.forEach(function(b){var r=b.getBBox();if(r.width>0&&r.height>0){drawn++;}});
      charts[svg.id]={bars:bars.length,drawn:drawn,width:Math.round(box.width),
                      height:Math.round(box.height)};
      if(String(bars.length)!==svg.getAttribute('data-bars')){
        problems.push(svg.id+': '+bars.length+' bars, expected '+svg.getAttribute('data-bars'));}
      if(drawn!==bars.length){problems.push(svg.id+': '+(bars.length-drawn)+' bars not drawn');}
      if(!(box.width>0&&box.height>0)){problems.push(svg.id+': not drawn');}
    });
    var total=0;
    document.querySelectorAll('#chart-repositories rect.bar').forEach(function(b){
      total+=Number(b.getAttribute('data-count'));});
    var said=Number(document.getElementById('total-images').getAttribute('data-count'));
    if(total!==said){problems.push('repositories add up to '+total+', totals say '+said);}
    document.documentElement.setAttribute('data-charts',JSON.stringify(charts));
    document.documentElement.setAttribute('data-checks',
        problems.length?JSON.stringify(problems):'ok');
  }
  var filter=document.getElementById('filter');
  if(filter){filter.addEventListener('input',function(){
    var needle=filter.value.toLowerCase();
    document.querySelectorAll('#quarantined tbody tr').forEach(function(row){
      row.style.display=row.textContent.toLowerCase().indexOf(needle)<0?'none':'';});});}
  try{check();}catch(e){errors.push(String(e));
    document.documentElement.setAttribute('data-errors',JSON.stringify(errors));}
})();
"""


def html_report(fleet: Fleet) -> str:
    """The whole page: inline CSS, SVG and script; no external asset; every text escaped."""
    total = sum(fleet.totals.values())
    tiles = [f'<div class="tile" id="total-images" data-count="{total}" '
             f'style="background:#37474f"><b>{total}</b>images</div>']
    tiles += [f'<div class="tile" id="total-{_e(state)}" data-count="{n}" '
              f'style="background:{COLORS.get(state, "#555")}"><b>{n}</b>{_e(state)}</div>'
              for state, n in fleet.totals.items()]
    legend = "".join(f'<span style="color:{COLORS[s]}">&#9632; {s}</span>' for s in STATES)
    repo_rows = [((f"{a}/" if fleet.accounts and a else "") + r, {s: c.get(s, 0) for s in STATES})
                 for a, r, c in fleet.repositories]
    in_use = ""
    if fleet.in_use_quarantined:
        items = "".join(f"<li>{_image_cell(i)}: {_use(i)}</li>" for i in fleet.in_use_quarantined)
        in_use = (f'<div class="alert" id="in-use-alert"><strong>'
                  f'{len(fleet.in_use_quarantined)} quarantined image(s) are running</strong>'
                  f"<ul>{items}</ul></div>")
    quarantined = _table(
        ["Image", "In use", "Blocking findings", "Reasons", "Decided"],
        [[_image_cell(i), _use(i), ", ".join(f'<span class="id">{_e(f)}</span>' for f in ids)
          or "-", "<br>".join(_e(r) for r in i.reasons[:5]),
          _e((i.decided_at or "-")[:19].replace("T", " "))]
         for i, ids in fleet.quarantined], "quarantined", "No image is quarantined.")
    blockers = (_bar_chart([(i, {"QUARANTINED": n}) for i, n in fleet.blockers],
                           "findings blocking the most images", chart_id="chart-blockers")
                if fleet.blockers else '<p class="empty">No finding blocks an image.</p>')
    exceptions = _table(
        ["Exception", "Package", "Owner", "Expires", "Status", "Images using it", "Reason"],
        [[_e(r.exception.id), _e(r.exception.package or "any"), _e(r.exception.owner),
          _e(r.expires_on), f'<span class="status-{_e(r.status)}">{_e(r.status)}</span>',
          str(r.images), _e(r.exception.reason)] for r in fleet.exceptions],
        "exceptions", "The policy grants no exception.")
    changes = (f"{fleet.changes} verdict change(s) since "
               f"{_e(fleet.since.date().isoformat())}")
    body = f"""
<h1>ECR Scan Gatekeeper: fleet report</h1>
<p class="muted">Policy {_e(fleet.policy_version)} &middot; generated
{_e(fleet.generated_at.isoformat(timespec="seconds"))} &middot; {changes}
{f"&middot; {fleet.gone} deleted image(s) left out" if fleet.gone else ""}</p>
<div class="tiles">{"".join(tiles)}</div>
{in_use}
<h2>Verdicts per repository</h2>
<p class="legend">{legend}</p>
{_bar_chart(repo_rows, "verdicts per repository", chart_id="chart-repositories")}
<h2>Quarantined images ({len(fleet.quarantined)})</h2>
<input id="filter" type="search" placeholder="Filter by repository, tag or finding">
{quarantined}
<p class="muted">Use unknown for {fleet.use_unknown} image(s): only enhanced scanning
(Amazon Inspector) reports whether an image runs.</p>
<h2>Findings blocking the most images</h2>
{blockers}
<h2>Verdict changes per day</h2>
{_timeline_chart(fleet.timeline)}
<h2>Exceptions</h2>
<p class="muted">Used: applied by a current verdict (verdicts recorded before the gatekeeper
kept which exceptions it applied count as not using any until they are judged again, e.g. by
<code>gatekeeper reevaluate --all</code>); expiring: within {fleet.window_days} days. The
calendar marks the last day each exception applies.</p>
{exceptions}
{_calendar(fleet)}
"""
    return (f'<!DOCTYPE html>\n<html lang="en" data-checks="pending"><head><meta charset="utf-8">'
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>Gatekeeper fleet report {_e(fleet.generated_at.date().isoformat())}"
            f"</title><style>{_STYLE}</style></head><body>{body}"
            f"<script>{_SCRIPT}</script></body></html>\n")
