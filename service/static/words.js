// Plain-language wording of FaceCloak's verification report.

const MODEL_NAMES = {
  w600k_mbf: "ArcFace (MobileFaceNet)",
  sface: "SFace",
  facenet: "FaceNet",
};

const CONDITION_NAMES = {
  saved: "the protected photo as saved",
  jpeg90: "re-saved as JPEG (quality 90)",
  jpeg75: "re-saved as JPEG (quality 75)",
  jpeg50: "re-saved as JPEG (quality 50)",
  "resize0.5": "shrunk to half size",
  makeup: "with makeup added",
};

export function modelName(model) {
  return MODEL_NAMES[model] || model;
}

export function conditionName(condition) {
  return CONDITION_NAMES[condition] || condition;
}

/** One check (face, model, condition) in words. */
export function checkWords(check) {
  if (!check.detected) return "face not found";
  return check.matched ? "still recognised" : "not recognised";
}

/** The sentence for one face and one model, e.g. "FaceNet no longer recognises this face". */
export function verdictSentence(model, checks) {
  const name = modelName(model);
  const saved = checks.saved;
  const others = Object.entries(checks).filter(([c]) => c !== "saved");
  const stillAfter = others.filter(([, ch]) => ch.matched).map(([c]) => conditionName(c));
  if (saved && saved.matched) {
    return `${name} still recognises this face: protection did not work against it.`;
  }
  const head = `${name} no longer recognises this face`;
  if (stillAfter.length === 0) {
    return others.length ? `${head}, also after re-saving, shrinking and makeup.` : `${head}.`;
  }
  return `${head}, but recognises it again when ${stillAfter.join(", ")}.`;
}

/** Whether the face is protected from this model in the photo as saved. */
export function isProtected(checks) {
  return Boolean(checks.saved) && !checks.saved.matched;
}

/** The human message for an API error answer. */
export function errorWords(status, error) {
  const code = (error && error.code) || "http_error";
  const message = (error && error.message) || `HTTP ${status}`;
  const hints = {
    missing_api_key: "Enter your API key.",
    invalid_api_key: "The API key was not accepted. Check it and try again.",
    not_an_image: "That file is not a photo FaceCloak can read.",
    unsupported_format: "That file format is not supported. Use JPEG, PNG or WebP.",
    unsupported_media_type: "That file is not a photo FaceCloak can read.",
    rate_limited: "Too many requests: wait a minute and try again.",
    file_too_large: "That photo is too large.",
    too_many_pixels: "That photo has too many pixels.",
  };
  const hint = hints[code] || "The request failed.";
  return `${hint} (${code}: ${message})`;
}
