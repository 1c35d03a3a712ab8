// The page of `privattrib serve`: builds its form from /api/info (the method registry), posts the
// upload to /api/protect and shows the report. Text from the server or the file name is always
// set with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, methods: {}, downloadUrl: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// Probabilities near 0 or 1 are said as bounds: "100.0%" for 0.99996 would claim certainty.
const pct = (p) => (p === null || p === undefined ? "–" : p > 0.999 && p < 1 ? ">99.9%" :
  p < 0.001 && p > 0 ? "<0.1%" : `${(100 * p).toFixed(1)}%`);
const mb = (n) => (n < 2 ** 20 ? `${Math.max(1, Math.round(n / 1024))} KB` : `${(n / 2 ** 20).toFixed(1)} MB`);

// ------------------------------------------------------------------ the form, from the registry

async function loadInfo() {
  let info;
  try {
    const res = await fetch("/api/info");
    info = await res.json();
  } catch (e) {
    showError("The page cannot reach privattrib's server. Is privattrib serve still running in its terminal?");
    return;
  }
  state.info = info;
  $("version").textContent = `privattrib ${info.version}`;
  const lim = info.limits;
  $("limits").textContent = `JPEG, PNG, WebP, TIFF, BMP, GIF, PGM · up to ${mb(lim.max_upload_bytes)} and ` +
    `${(lim.max_pixels / 1e6).toFixed(0)} megapixels`;
  const select = $("method");
  for (const m of info.methods) {
    state.methods[m.name] = m;
    select.append(el("option", { value: m.name, text: m.name === "none" ? "none (no obfuscation)" : m.name }));
  }
  select.value = state.methods["dp-pix"] ? "dp-pix" : info.methods[0].name;
  select.addEventListener("change", renderParams);
  renderParams();

  const detectors = info.face_detectors || [];
  if (!detectors.length) {
    $("faces").disabled = true;
    $("detector-note").textContent = "(no offline face detector installed)";
  } else {
    $("detector-note").textContent = `(offline detector: ${detectors[0]})`;
  }
  $("faces").addEventListener("change", syncFaces);
  syncFaces();

  const list = $("configured");
  list.replaceChildren();
  if (info.attribution) {
    list.append(el("li", { text: `Attribution model: ${info.attribution.source}. ${info.attribution.scope}` }));
  } else {
    list.append(el("li", { text: "No attribution model: start with --model demo (the demo's synthetic sources) " +
      "or --model PATH to see attribution before and after." }));
  }
  if (info.reid) {
    list.append(el("li", { text: `Identity gallery: ${info.reid.people} people (${info.reid.root}).` }));
  } else {
    list.append(el("li", { text: "No identity gallery: start with --reid-gallery DIR (one folder of photos " +
      "per person) to see whether the protected photo is still recognised." }));
  }
  if (info.keeps_uploads) {
    $("local-note").textContent = "Runs on this computer only. This server KEEPS every upload and its result " +
      "(--keep-uploads).";
  }
}

function paramInput(m, p) {
  const id = `param-${p.name}`;
  let input;
  const value = p.form_default;
  if (p.choices) {
    input = el("select", { id, name: `param.${p.name}` });
    for (const c of p.choices) {
      const label = p.name === "noise" && c === "secure" ? "secure (exact, for publishing)" :
        p.name === "noise" && c === "fast" ? "fast (float, experiments)" : c;
      input.append(el("option", { value: c, text: label }));
    }
    input.value = value;
  } else {
    const numeric = p.type === "integer" || p.type === "number";
    input = el("input", {
      id, name: `param.${p.name}`, type: numeric ? "number" : "text",
      step: p.type === "integer" ? (p.odd ? "2" : "1") : "any",
      min: p.minimum ?? (p.exclusive_minimum !== null && p.exclusive_minimum !== undefined ? p.exclusive_minimum : null),
      max: p.form_max ?? null,
      placeholder: p.optional ? "auto" : null,
    });
    if (value !== null && value !== undefined) input.value = String(value);
  }
  const label = el("label", { class: "row", for: id, title: p.help },
    el("span", { text: p.name === "epsilon" ? "ε (epsilon)" : p.name }), input,
    el("span", { class: "param-help", text: p.choices ? p.help :
      `${p.help}; ${p.allowed}${p.form_max ? `, at most ${p.form_max} here` : ""}` }));
  return el("div", { class: p.choices || p.help.length > 60 ? "param wide" : "param" }, label);
}

function renderParams() {
  const m = state.methods[$("method").value];
  const box = $("params");
  box.replaceChildren();
  for (const p of m.parameters) box.append(paramInput(m, p));
  const summary = $("method-summary");
  summary.replaceChildren();
  summary.append(el("span", { text: m.summary }));
  if (m.paper) summary.append(el("br"), el("span", { text: m.paper }));
  const kind = m.privacy.startsWith("epsilon-DP") ? "dp" : m.privacy.startsWith("d_X") ? "metric" : "";
  summary.append(el("br"), el("span", { class: `privacy ${kind}`, text: `privacy: ${m.privacy}` }));
  clearErrors();
}

function syncFaces() {
  $("no-face-row").hidden = !$("faces").checked;
}

// ------------------------------------------------------------------ file choice

function setFile(file) {
  $("file-label").textContent = file ? `${file.name} (${mb(file.size)})` : "Choose a photo or drop it here";
}

function wireDrop() {
  const drop = $("drop");
  const input = $("file");
  input.addEventListener("change", () => setFile(input.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      setFile(input.files[0]);
    }
  });
}

// ------------------------------------------------------------------ errors

function clearErrors() {
  $("error").hidden = true;
  for (const i of document.querySelectorAll(".invalid")) i.classList.remove("invalid");
}

// The message goes beside the button the person just pressed; the field at fault turns red.
function showError(message, field) {
  const box = $("error");
  box.replaceChildren(el("strong", { text: "Not protected" }), el("span", { text: message }));
  box.hidden = false;
  if (!field) return;
  const input = field === "file" ? $("drop") : document.querySelector(`[name="${CSS.escape(field)}"]`);
  if (!input) return;
  input.classList.add("invalid");
  if (field === "margin" || field === "seed") document.querySelector(".advanced").open = true;
}

// ------------------------------------------------------------------ submit

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const file = $("file").files[0];
  if (!file) { showError("Choose a photo first.", "file"); return; }
  const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showError(`${file.name} is ${mb(file.size)}, over this server's limit of ${mb(limit)}.`, "file");
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("method", $("method").value);
  for (const input of $("params").querySelectorAll("[name^='param.']")) form.append(input.name, input.value.trim());
  form.append("faces", $("faces").checked ? "true" : "false");
  form.append("if_no_face", $("if_no_face").value);
  form.append("margin", $("margin").value.trim());
  form.append("seed", $("seed").value.trim());

  $("submit").disabled = true;
  $("result").classList.add("stale");
  $("busy-name").textContent = file.name;
  $("busy-time").textContent = "";
  $("busy").hidden = false;
  // Large photos with exact noise or svd-mp take minutes on a CPU: show that work goes on
  const started = Date.now();
  const ticker = setInterval(() => {
    $("busy-time").textContent = `${Math.round((Date.now() - started) / 1000)} s`;
  }, 1000);
  try {
    const res = await fetch("/api/protect", { method: "POST", body: form });
    let body;
    try { body = await res.json(); } catch (e) { body = { error: `the server answered ${res.status} without a report` }; }
    if (!res.ok) { showError(body.error || `error ${res.status}`, body.field); return; }
    render(body);
  } catch (e) {
    showError("The upload did not reach the server (is privattrib serve still running in its terminal?).");
  } finally {
    clearInterval(ticker);
    $("submit").disabled = false;
    $("busy").hidden = true;
  }
}

// ------------------------------------------------------------------ the report

function emptyCard(id) {
  const body = $(id).querySelector(".body");
  body.replaceChildren();
  return body;
}

function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [k, v] of pairs) if (v !== null && v !== undefined && v !== "") dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
  return dl;
}

function dataUrlToBlobUrl(dataUrl) {
  const [head, b64] = dataUrl.split(",");
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return URL.createObjectURL(new Blob([bytes], { type: head.slice(5).split(";")[0] }));
}

function render(r) {
  $("intro").hidden = true;
  $("result").hidden = false;
  $("result").classList.remove("stale");
  const inp = r.input;
  const small = Math.max(inp.width, inp.height) < 400;
  $("img-original").src = r.images.original;
  $("img-protected").src = r.images.protected;
  $("img-original").classList.toggle("small", small);
  $("img-protected").classList.toggle("small", small);
  const orient = inp.exif_orientation ? `, EXIF orientation ${inp.exif_orientation} applied` : "";
  $("cap-original").textContent = `${inp.name} · ${inp.format || "image"} ${inp.mode} · ${inp.width}×${inp.height}${orient}`;
  $("cap-protected").textContent = `${r.method.spec}`;
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = dataUrlToBlobUrl(r.images.protected);
  const dl = $("download");
  dl.href = state.downloadUrl;
  dl.download = r.download_name;

  renderPrivacy(r);
  renderUtility(r);
  renderAttribution(r);
  renderReid(r);
  const t = r.timing_s || {};
  $("timing").textContent = `Done in ${(t.total || 0).toFixed(2)} s (protect ${(t.protect || 0).toFixed(2)} s` +
    (t.attribution !== undefined ? `, attribution ${t.attribution.toFixed(2)} s` : "") +
    (t.reid !== undefined ? `, re-identification ${t.reid.toFixed(2)} s` : "") + ").";
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
}

function renderPrivacy(r) {
  const m = r.method;
  const body = emptyCard("card-privacy");
  const epsNote = m.privacy === "d_X-privacy" ? " (metric privacy: not comparable with DP's ε)" : "";
  body.append(facts([
    ["method", m.spec],
    ["guarantee", m.privacy === "none" ? "none (no formal privacy)" : m.privacy],
    ["ε", m.epsilon === null ? null : `${m.epsilon}${epsNote}`],
    ["noise", m.noise_backend ? (m.noise_backend === "secure" ? "secure: exact discrete Laplace (OpenDP)" : "fast: float Laplace") : null],
    ["seed", m.seeded ? "given (output reproducible)" : (m.noise_backend || m.name === "svd-mp" ? "secret, drawn for this photo" : null)],
    ["region", r.faces ? (r.faces.found ? `${r.faces.found} face${r.faces.found > 1 ? "s" : ""} (${r.faces.detector})` :
      "no face found: whole photo") : "whole photo"],
  ]));
  if (m.warning) body.append(el("p", { class: "warn", text: m.warning }));
  if (r.faces && r.faces.found) {
    body.append(el("p", { class: "note", text: "The face boxes come from the original photo and show in the " +
      "output: their position and size are not protected." }));
  }
}

function renderUtility(r) {
  const body = emptyCard("card-utility");
  const u = r.metrics;
  const psnr = u.identical ? "∞" : u.psnr === null ? "–" : u.psnr.toFixed(2);
  body.append(el("div", { class: "metrics" },
    el("div", {}, el("div", { class: "label", text: "PSNR" }), el("div", { class: "big", text: `${psnr} dB` })),
    el("div", {}, el("div", { class: "label", text: "SSIM" }), el("div", { class: "big", text: u.ssim === null ? "–" : u.ssim.toFixed(3) })),
    el("div", {}, el("div", { class: "label", text: "MSE" }), el("div", { class: "big", text: u.mse.toFixed(1) }))));
  body.append(el("p", { class: "note", text: "Against the original, over the whole photo. Higher PSNR and SSIM " +
    "(1 = identical) mean the picture changed less: more of it is still usable, and possibly more of it still identifies." }));
}

function bars(classes, before, after, realClass) {
  const grid = el("div", { class: "bars" });
  for (const c of classes) {
    const b = before.probabilities[c], a = after.probabilities[c];
    const row = (kind, p) => {
      const fill = el("div", { class: "fill" });
      fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      return el("div", { class: `bar ${kind}` }, fill, el("span", { class: "val", text: pct(p) }));
    };
    grid.append(el("div", { class: "cls", text: c, title: c === realClass ? "the real class" : null }),
      el("div", { class: "pairbar" }, row("before", b), row("after", a)));
  }
  return grid;
}

function renderAttribution(r) {
  const body = emptyCard("card-attribution");
  const a = r.attribution;
  if (!a) {
    body.append(el("p", { class: "empty", text: "No attribution model is configured, so no attribution is shown. " +
      "Start the page with --model demo (a small model of the demo's synthetic sources) or --model PATH " +
      "(a checkpoint of privattrib train-attributor or privattrib run)." }));
    return;
  }
  const m = a.model;
  const before = a.before, after = a.after;
  let verdict, cls;
  if (m.real_class && after.predicted === m.real_class && before.predicted !== m.real_class) {
    verdict = `Laundered: attributed to ${before.predicted} before, to the real class "${m.real_class}" after`; cls = "bad";
  } else if (before.predicted === after.predicted) {
    verdict = `Same answer before and after: ${after.predicted}`; cls = "neutral";
  } else {
    verdict = `Changed: ${before.predicted} before, ${after.predicted} after`; cls = "neutral";
  }
  body.append(el("div", { class: `verdict ${cls}`, text: verdict }));
  body.append(el("div", { class: "legend" }, el("span", { class: "before", text: "original" }),
    el("span", { class: "after", text: "protected" })));
  body.append(bars(m.classes, before, after, m.real_class));
  const cal = m.calibrated ? `calibrated (temperature ${m.temperature.toFixed(2)}` +
    (m.ece_before != null && m.ece_after != null ? `, ECE ${m.ece_before.toFixed(3)} → ${m.ece_after.toFixed(3)}` : "") + ")" :
    "uncalibrated (raw softmax, usually over-confident)";
  const acc = m.held_out_accuracy !== null && m.held_out_accuracy !== undefined ?
    `held-out accuracy ${pct(m.held_out_accuracy)}` + (m.chance ? ` (chance ${pct(m.chance)})` : "") : "no held-out accuracy recorded";
  body.append(el("p", { class: "scope", text: `Scope: ${m.scope}` }));
  body.append(el("p", { class: "note", text: `Model ${m.source} · ${m.arch || "classifier"} at ${m.image_size}×${m.image_size} · ${cal} · ${acc}.` }));
  const notes = [...new Set([...(before.notes || []), ...(m.notes || [])])];
  for (const n of notes) body.append(el("p", { class: "note", text: n }));
}

function renderReid(r) {
  const body = emptyCard("card-reid");
  const g = r.reid;
  if (!g) {
    body.append(el("p", { class: "empty", text: "No identity gallery is configured, so no re-identification risk is " +
      "measured. Start the page with --reid-gallery DIR (one sub-folder of photos per person, e.g. Extended Yale B) " +
      "to see whether the protected photo is still matched to the same person." }));
    return;
  }
  const same = g.same_person;
  body.append(el("div", { class: `verdict ${same ? "bad" : "good"}`,
    text: same ? `Still re-identified: the protected photo is matched to ${g.original.person}, as the original is`
      : `Not matched to the same person: ${g.original.person} is at rank ${g.rank} of ${g.people}` }));
  body.append(facts([
    ["original", `${g.original.person} (${pct(g.original.probability)})`],
    ["protected", same ? `${g.protected.person} (${pct(g.protected.probability)}), rank 1 of ${g.people}` :
      `${g.protected.person} (${pct(g.protected.probability)}); ${g.original.person} is at rank ${g.rank} of ` +
      `${g.people} (${pct(g.probability_of_original_person)})`],
    ["chance", `${pct(g.chance)} (1 of ${g.people} people)`],
    ["identity model", `trained on ${g.n_train} clean gallery photos; held-out accuracy ${pct(g.held_out_accuracy)}` +
      (g.held_out_top5 !== null && g.held_out_top5 !== undefined ? `, top-5 ${pct(g.held_out_top5)}` : "") +
      ` on ${g.n_held_out} photos`],
    ["compared", g.region],
  ]));
  body.append(el("p", { class: "note" }, "What this means: a classifier trained on clean photos of the gallery's " +
    "people (a naive attacker) is asked who is in the original and who is in the protected photo. It always names " +
    "one of the gallery's people, so the figure means something only when the photo shows one of them (and a photo " +
    "that is itself in the gallery is recognised more easily than a new one). An attacker " +
    "who retrains on photos protected the same way does better; ", el("code", { text: "privattrib attack reid" }),
    " measures that on a whole set."));
}

document.addEventListener("DOMContentLoaded", () => {
  wireDrop();
  $("protect-form").addEventListener("submit", submit);
  loadInfo();
});
