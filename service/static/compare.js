// Before/after comparison, 100% face crops, the difference heat map and the verdict table.

import { checkWords, conditionName, isProtected, modelName, verdictSentence } from "./words.js";

const AMPLIFY = 10;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not display this image"));
    img.src = url;
  });
}

function pixels(img) {
  const canvas = el("canvas", { width: img.naturalWidth, height: img.naturalHeight });
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  return ctx.getImageData(0, 0, canvas.width, canvas.height);
}

/** Before/after slider: the after image is clipped to the slider's share of the width. */
function slider(beforeUrl, afterUrl, name, id) {
  const before = el("img", { src: beforeUrl, alt: `Original: ${name}`, class: "before" });
  const after = el("img", { src: afterUrl, alt: `Protected: ${name}`, class: "after" });
  const afterBox = el("div", { class: "after-box" }, after);
  const range = el("input", {
    type: "range", min: "0", max: "100", value: "50", id: `slider-${id}`,
    "aria-label": "Comparison slider: left shows the original, right the protected photo",
  });
  const update = () => {
    afterBox.style.clipPath = `inset(0 0 0 ${range.value}%)`;
    range.setAttribute("aria-valuetext", `${range.value}% original, ${100 - range.value}% protected`);
  };
  range.addEventListener("input", update);
  update();
  const stage = el("div", { class: "compare" }, before, afterBox);
  const legend = el("p", { class: "legend" },
    el("span", { text: "◀ original" }), el("span", { text: "protected ▶" }));
  return el("figure", { class: "comparison" }, stage, range, legend,
    el("figcaption", { text: "Drag the slider (or use the arrow keys) to compare." }));
}

/** |after - before| per pixel, amplified, computed here in the browser. */
function heatMap(beforeImg, afterImg) {
  const a = pixels(beforeImg);
  const b = pixels(afterImg);
  const canvas = el("canvas", {
    width: a.width, height: a.height, class: "heat",
    role: "img", "aria-label": "Difference between the original and the protected photo",
  });
  if (a.width !== b.width || a.height !== b.height) return null;
  const out = canvas.getContext("2d").createImageData(a.width, a.height);
  for (let i = 0; i < a.data.length; i += 4) {
    const d = Math.max(
      Math.abs(a.data[i] - b.data[i]),
      Math.abs(a.data[i + 1] - b.data[i + 1]),
      Math.abs(a.data[i + 2] - b.data[i + 2]),
    ) * AMPLIFY;
    out.data[i] = Math.min(255, d);
    out.data[i + 1] = Math.min(255, d * 0.6);
    out.data[i + 2] = Math.min(255, d * 0.2);
    out.data[i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(out, 0, 0);
  return el("figure", { class: "heatmap" }, canvas, el("figcaption", {
    text: `Where the photo changed: absolute difference of the two images, computed in your `
      + `browser and amplified ${AMPLIFY}×. Black means unchanged.`,
  }));
}

function crop(img, box, label) {
  const [x0, y0, x1, y1] = box.map(Math.round);
  const w = Math.max(1, x1 - x0);
  const h = Math.max(1, y1 - y0);
  const canvas = el("canvas", { width: w, height: h, role: "img", "aria-label": label });
  canvas.getContext("2d").drawImage(img, x0, y0, w, h, 0, 0, w, h);
  return el("figure", {}, el("div", { class: "zoom" }, canvas), el("figcaption", { text: label }));
}

function faceBoxes(report, img) {
  const pad = (b) => {
    const [x0, y0, x1, y1] = b;
    const m = 0.15 * Math.max(x1 - x0, y1 - y0);
    return [Math.max(0, x0 - m), Math.max(0, y0 - m),
      Math.min(img.naturalWidth, x1 + m), Math.min(img.naturalHeight, y1 + m)];
  };
  const verified = report.verification && report.verification.faces;
  if (verified && verified.length) return verified.map((f) => pad(f.box));
  return (report.faces || []).map((f) => f.region);
}

function verdictTable(report) {
  const faces = (report.verification && report.verification.faces) || [];
  if (!faces.length) {
    return el("p", { text: "No verification was run for this photo." });
  }
  const conditions = report.verification.conditions;
  const table = el("table", { class: "verdict" });
  table.append(el("caption", { text: "Can face recognition still match each face?" }));
  const head = el("tr", {}, el("th", { scope: "col", text: "Face" }),
    el("th", { scope: "col", text: "Model" }), el("th", { scope: "col", text: "Verdict" }));
  for (const c of conditions) head.append(el("th", { scope: "col", text: conditionName(c) }));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  faces.forEach((face, n) => {
    for (const [model, checks] of Object.entries(face.models)) {
      const ok = isProtected(checks);
      const row = el("tr", { class: ok ? "ok" : "bad" },
        el("th", { scope: "row", text: `Face ${n + 1}` }),
        el("td", { text: modelName(model) }),
        el("td", { class: "sentence", text: verdictSentence(model, checks) }));
      for (const c of conditions) {
        const check = checks[c];
        row.append(el("td", { text: check ? checkWords(check) : "not checked" }));
      }
      body.append(row);
    }
  });
  table.append(body);
  return el("div", { class: "table-wrap", tabindex: "0", role: "region",
    "aria-label": "Verification table" }, table);
}

/** The whole result of one photo: comparison, heat map, faces at 100%, verdict, download. */
export async function renderResult(item, beforeUrl, afterBlob) {
  const afterUrl = URL.createObjectURL(afterBlob);
  const id = `item-${item.index}`;
  const section = el("article", { class: "result", id: `result-${item.index}`,
    "aria-labelledby": `${id}-title` });
  section.append(el("h3", { id: `${id}-title`, text: item.filename }));
  const faces = item.faces === 1 ? "1 face" : `${item.faces} faces`;
  section.append(el("p", { text: `Protected: ${faces}.` }));
  const download = el("a", { href: afterUrl, download: item.filename, class: "button",
    text: `Download protected ${item.filename}` });
  section.append(download);
  if (beforeUrl) {
    const [beforeImg, afterImg] = await Promise.all([loadImage(beforeUrl), loadImage(afterUrl)]);
    section.append(slider(beforeUrl, afterUrl, item.filename, id));
    const boxes = faceBoxes(item.report || {}, beforeImg);
    if (boxes.length) {
      section.append(el("h4", { text: "Each face at 100%" }));
      const grid = el("div", { class: "faces" });
      boxes.forEach((box, n) => {
        grid.append(crop(beforeImg, box, `Face ${n + 1}, original`));
        grid.append(crop(afterImg, box, `Face ${n + 1}, protected`));
      });
      section.append(grid);
    }
    const heat = heatMap(beforeImg, afterImg);
    if (heat) section.append(el("h4", { text: "Visibility heat map" }), heat);
  } else {
    section.append(el("img", { src: afterUrl, alt: `Protected: ${item.filename}`, class: "single" }));
  }
  section.append(el("h4", { text: "Verdict" }), verdictTable(item.report || {}));
  return section;
}

export { el };
