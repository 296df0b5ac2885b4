// The script of the text4vis page (text4vis/serve serves it at /page.js): no external asset.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

async function answer(response) {
  let body;
  try { body = await response.json(); }
  catch (e) { throw new Error("the server answered " + response.status + " without a message"); }
  if (!response.ok || body.error) { throw new Error(body.error || ("error " + response.status)); }
  return body;
}

fetch("/api/info").then(answer).then((info) => {
  $("info").textContent = "model " + info.model + ", " + info.frames + " frames per video";
  $("index-info").textContent = info.index
    ? info.indexed_videos + " videos" +
      (info.indexed_segments ? " (" + info.indexed_segments + " segments)" : "") +
      " in " + info.index
    : "No index loaded (start the app with --index INDEX).";
  if (!info.index) { $("search-button").disabled = true; }
}).catch((e) => { $("info").textContent = e.message; });

$("label-file").addEventListener("change", async () => {
  const file = $("label-file").files[0];
  if (file) { $("labels").value = await file.text(); }
});

// Colours of the timeline's labels: one per label name, in the order they first appear.
const STRIP_COLOURS = ["#2f6fde", "#1e9e5a", "#d9822b", "#8e44ad", "#c0392b", "#16a085",
                       "#7f8c8d", "#b7950b"];

function seconds(value) { return value.toFixed(1) + " s"; }

// The strip under the label player: one box per segment, its width its share of the video;
// a click plays the video from the segment's start.
function drawTimeline(timeline) {
  const strip = $("timeline-strip");
  strip.textContent = "";
  const colours = new Map();
  for (const segment of timeline.segments) {
    if (!colours.has(segment.label)) {
      colours.set(segment.label, STRIP_COLOURS[colours.size % STRIP_COLOURS.length]);
    }
    const box = document.createElement("div");
    box.className = "segment";
    box.style.flexGrow = String(segment.end - segment.start);
    box.style.background = colours.get(segment.label);
    box.textContent = segment.label;
    box.title = segment.label + ": " + seconds(segment.start) + " - " + seconds(segment.end) +
      " (" + (100 * segment.score).toFixed(0) + "%)";
    box.dataset.start = String(segment.start);
    box.dataset.end = String(segment.end);
    box.addEventListener("click", () => {
      const player = $("label-player");
      if (player.hidden) { return; }
      player.currentTime = segment.start;
      player.play().catch(() => {});
    });
    strip.appendChild(box);
  }
  $("timeline-info").textContent = timeline.segments.length + " segments over " +
    seconds(timeline.duration) + " (windows of " + seconds(timeline.window) + ")";
  $("timeline").hidden = false;
}

async function labelTimeline(file, path, labels) {
  const windowSeconds = $("window").value.trim();
  if (!windowSeconds) { return; }
  const params = new URLSearchParams({labels: labels, window: windowSeconds});
  let request;
  if (file) {
    params.set("name", file.name);
    request = fetch("/api/timeline?" + params, {method: "POST", body: file});
  } else {
    params.set("path", path);
    request = fetch("/api/timeline?" + params, {method: "POST"});
  }
  const timeline = await answer(await request);
  if (timeline.windows.length > 2) { drawTimeline(timeline); }  // a long video
}

let labelVideoUrl = null;

$("label-button").addEventListener("click", async () => {
  showError("label-error", "");
  $("label-output").hidden = true;
  $("label-results").textContent = "";
  $("label-frames").textContent = "";
  $("timeline").hidden = true;
  $("timeline-strip").textContent = "";
  const labelPlayer = $("label-player");
  labelPlayer.hidden = true;
  labelPlayer.removeAttribute("src");
  if (labelVideoUrl) { URL.revokeObjectURL(labelVideoUrl); labelVideoUrl = null; }
  const file = $("video-file").files[0];
  const path = $("video-path").value.trim();
  const params = new URLSearchParams({labels: $("labels").value});
  let request;
  if (file) {
    params.set("name", file.name);
    request = fetch("/api/label?" + params, {method: "POST", body: file});
  } else if (path) {
    params.set("path", path);
    request = fetch("/api/label?" + params, {method: "POST"});
  } else {
    showError("label-error", "Choose a video file or type a path.");
    return;
  }
  $("label-button").disabled = true;
  try {
    const result = await answer(await request);
    $("label-video").textContent = result.video;
    for (const p of result.predictions) {
      const row = document.createElement("div");
      row.className = "row label-row";
      const name = document.createElement("span");
      name.className = "label-name";
      name.textContent = p.label;
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = (100 * p.score).toFixed(1) + "%";  // the probability
      track.appendChild(bar);
      const score = document.createElement("span");
      score.className = "score label-score";
      score.textContent = (100 * p.score).toFixed(1) + "%";
      row.append(name, track, score);
      $("label-results").appendChild(row);
    }
    result.frames.forEach((uri, i) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = uri;
      img.alt = "frame " + result.frame_indices[i];
      const caption = document.createElement("figcaption");
      caption.textContent = "frame " + result.frame_indices[i];
      figure.append(img, caption);
      $("label-frames").appendChild(figure);
    });
    $("label-output").hidden = false;
    if (file) {  // the uploaded file plays here; the strip seeks it
      labelVideoUrl = URL.createObjectURL(file);
      labelPlayer.src = labelVideoUrl;
      labelPlayer.hidden = false;
    }
    await labelTimeline(file, path, params.get("labels"));
  } catch (e) {
    showError("label-error", e.message);
  } finally {
    $("label-button").disabled = false;
  }
});

// Play a hit; a moment of a segment index plays from its start.
function play(hit, card) {
  document.querySelectorAll(".hit.playing").forEach((c) => c.classList.remove("playing"));
  card.classList.add("playing");
  const player = $("player");
  const start = typeof hit.start === "number" ? hit.start : 0;
  player.hidden = false;
  const seek = () => {
    player.currentTime = start;
    player.play().catch(() => {});
  };
  if (player.getAttribute("src") === hit.play && player.readyState >= 1) {
    seek();
  } else {
    player.addEventListener("loadedmetadata", seek, {once: true});
    player.src = hit.play;
  }
}

async function search() {
  showError("search-error", "");
  $("search-results").textContent = "";
  const params = new URLSearchParams({q: $("query").value, k: $("top-k").value});
  $("search-button").disabled = true;
  try {
    const result = await answer(await fetch("/api/search?" + params));
    for (const hit of result.hits) {
      const card = document.createElement("div");
      card.className = "hit";
      card.title = hit.video;
      const img = document.createElement("img");
      img.className = "thumb";
      img.src = hit.thumbnail;
      img.alt = hit.name;
      const score = document.createElement("div");
      score.className = "hit-score";
      score.textContent = "#" + hit.rank + "  " + hit.score.toFixed(3);
      if (typeof hit.start === "number") {
        const span = document.createElement("span");
        span.className = "hit-span";
        span.textContent = "  " + seconds(hit.start) + " - " + seconds(hit.end);
        score.appendChild(span);
      }
      const name = document.createElement("div");
      name.className = "name hit-name";
      name.textContent = hit.name;
      card.append(img, score, name);
      card.addEventListener("click", () => play(hit, card));
      $("search-results").appendChild(card);
    }
    if (!result.hits.length) { showError("search-error", "No videos in the index."); }
  } catch (e) {
    showError("search-error", e.message);
  } finally {
    $("search-button").disabled = false;
  }
}
$("search-button").addEventListener("click", search);
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter") { search(); } });
