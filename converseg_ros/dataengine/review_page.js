"use strict";
// The per-run token comes from the URL the server printed; every request sends it in a header (no cookie),
// so another site cannot make this browser act on the run. Pictures are fetched the same way.
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const HEADERS = {"X-Review-Token": TOKEN};
let samples = [], current = 0, pictureUrls = [];
const $ = (id) => document.getElementById(id);

async function picture(img, url) {
  const res = await fetch(url, {headers: HEADERS});
  if (!res.ok) { img.removeAttribute("src"); img.alt = "picture unavailable"; return; }
  const blobUrl = URL.createObjectURL(await res.blob());
  pictureUrls.push(blobUrl);
  img.src = blobUrl;
}

function counts() {
  const a = samples.filter((s) => s.decision === "accept").length;
  const r = samples.filter((s) => s.decision === "reject").length;
  $("counts").textContent = `${samples.length} samples · ${a} accepted · ${r} rejected · ` +
    `${samples.length - a - r} undecided`;
}

function renderList() {
  const list = $("list");
  list.innerHTML = "";
  samples.forEach((s, i) => {
    const li = document.createElement("li");
    li.dataset.id = s.id;
    li.className = (s.decision || "") + (i === current ? " current" : "");
    li.innerHTML = `<span class="mark">${s.decision === "accept" ? "✓" : s.decision === "reject" ? "✗" : ""}</span>`;
    li.append(document.createTextNode(s.prompt));
    const where = document.createElement("small");
    where.textContent = `${s.image_id} · ${s.family}`;
    li.append(where);
    li.onclick = () => show(i);
    list.append(li);
  });
}

function show(i) {
  if (!samples.length) { $("empty").hidden = false; $("sample").hidden = true; counts(); return; }
  current = Math.max(0, Math.min(samples.length - 1, i));
  const s = samples[current];
  $("sample").dataset.id = s.id;
  $("prompt").textContent = s.prompt + (s.negative ? "  (hard negative: empty mask)" : "");
  $("family").textContent = `${s.family} / ${s.subtype}`;
  $("verdict").textContent = `verifier: ${s.verdict}`;
  $("verdict").className = s.verdict;
  $("position").textContent = `${current + 1} / ${samples.length}`;
  $("reason").textContent = s.reason;
  pictureUrls.forEach((u) => URL.revokeObjectURL(u));
  pictureUrls = [];
  picture($("overlay"), `/img/${encodeURIComponent(s.id)}/overlay`);
  picture($("original"), `/img/${encodeURIComponent(s.id)}/original`);
  const d = $("decision");
  d.textContent = s.decision ? (s.decision === "accept" ? "Accepted" : "Rejected") : "undecided";
  d.className = s.decision || "";
  d.dataset.decision = s.decision || "";
  counts();
  renderList();
}

async function decide(decision) {
  const s = samples[current];
  if (!s) return;
  const res = await fetch("/api/decision", {
    method: "POST", headers: {...HEADERS, "Content-Type": "application/json"},
    body: JSON.stringify({id: s.id, decision: decision}),
  });
  if (!res.ok) { alert("saving the decision failed: " + (await res.text())); return; }
  s.decision = (await res.json()).decision;
  if (decision !== null) {
    const next = samples.findIndex((t, j) => j > current && !t.decision);
    show(next >= 0 ? next : current);
  } else {
    show(current);
  }
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  if (k === "a") decide("accept");
  else if (k === "r") decide("reject");
  else if (k === "u") decide(null);
  else if (k === "j" || e.key === "ArrowRight") show(current + 1);
  else if (k === "k" || e.key === "ArrowLeft") show(current - 1);
  else if (k === "n") { const n = samples.findIndex((t) => !t.decision); if (n >= 0) show(n); }
  else return;
  e.preventDefault();
});
$("accept").onclick = () => decide("accept");
$("reject").onclick = () => decide("reject");
$("undo").onclick = () => decide(null);

fetch("/api/samples", {headers: HEADERS}).then((r) => {
  if (!r.ok) throw new Error(`the server refused (${r.status}): open the URL printed by converseg-data review`);
  return r.json();
}).then((data) => {
  samples = data.samples;
  if (data.problems.length) {
    const box = $("problems");
    box.hidden = false;
    box.textContent = `${data.problems.length} item(s) skipped: ` + data.problems.slice(0, 3).join(" | ");
  }
  const first = samples.findIndex((s) => !s.decision);
  show(first >= 0 ? first : 0);
  document.body.dataset.ready = "1";
}).catch((err) => {
  $("empty").hidden = false; $("sample").hidden = true;
  $("empty").textContent = String(err.message || err);
  document.body.dataset.ready = "error";
});
