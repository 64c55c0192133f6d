// dim-search serve: the page. Plain DOM code on the JSON API (/api/...), no build step.
// The view lives in the URL (?id=123&k=20, ?tab=duplicates&threshold=0.9&keep=newest, ?folder=x&page=2),
// so back/forward and shared links work. Text from the index is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const PER_PAGE = 60;
const TOKEN = document.querySelector('meta[name="page-token"]').content; // required by the apply
let info = null;
let review = null; // the duplicates tab: {data, groups, current, keep: Map(group -> id), skip: Set(group)}

function params() {
  return new URLSearchParams(window.location.search);
}

function navigate(changes, replace = false) {
  const next = params();
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") next.delete(key);
    else next.set(key, String(value));
  }
  const url = next.toString() ? `?${next}` : window.location.pathname;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

async function api(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function say(text, ok = false) {
  $("message").textContent = text || "";
  $("message").classList.toggle("ok", ok);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function tile(image, score, onClick) {
  const node = element("figure", "tile");
  node.dataset.id = image.id;
  const picture = element("img");
  picture.src = image.thumbnail;
  picture.alt = image.path;
  picture.loading = "lazy";
  node.append(picture);
  const caption = element("figcaption", "path");
  if (score !== undefined) caption.append(element("span", "score", score.toFixed(4)), " ");
  caption.append(element("span", "name", image.path));
  node.append(caption);
  node.title = image.path;
  node.addEventListener("click", onClick || (() => navigate({ id: image.id, tab: null })));
  return node;
}

function show(section) {
  for (const name of ["browse", "neighbours", "duplicates"]) $(name).hidden = name !== section;
  $("tab-browse").classList.toggle("active", section !== "duplicates");
  $("tab-duplicates").classList.toggle("active", section === "duplicates");
}

function currentK() {
  const k = parseInt(params().get("k") || "10", 10);
  return Number.isFinite(k) && k > 0 ? Math.min(k, info ? info.max_k : 200) : 10;
}

async function renderBrowse() {
  show("browse");
  const query = params();
  const folder = query.get("folder") || "";
  const page = parseInt(query.get("page") || "1", 10) || 1;
  $("folder").value = folder;
  const data = await api(`/api/images?${new URLSearchParams({ folder, page, per_page: PER_PAGE })}`);
  const grid = $("grid");
  grid.replaceChildren(...data.images.map((image) => tile(image)));
  $("page-info").textContent = `page ${data.page} of ${data.pages} (${data.total} images)`;
  $("prev").disabled = data.page <= 1;
  $("next").disabled = data.page >= data.pages;
  $("prev").onclick = () => navigate({ page: data.page - 1 });
  $("next").onclick = () => navigate({ page: data.page + 1 });
}

function renderResults(query, results, links) {
  show("neighbours");
  $("query-image").src = query.src;
  $("query-path").textContent = query.label;
  $("query-links").replaceChildren(...links);
  $("results").replaceChildren(
    ...results.map((hit) => {
      const node = tile(hit, hit.score);
      if (query.id === hit.id) node.classList.add("self");
      return node;
    })
  );
}

async function renderNeighbours(id) {
  const k = currentK();
  const data = await api(`/api/neighbours/${encodeURIComponent(id)}?k=${k}`);
  const open = element("a", "", "open the original");
  open.href = data.query.original;
  open.target = "_blank";
  open.rel = "noopener noreferrer";
  const back = element("a", "", "back to the grid");
  back.href = "?";
  back.addEventListener("click", (event) => {
    event.preventDefault();
    navigate({ id: null });
  });
  renderResults(
    { id: data.query.id, src: data.query.thumbnail, label: data.query.path },
    data.results,
    [open, " · ", back, ` · ${data.results.length} nearest, cosine similarity`]
  );
}

function humanSize(size) {
  if (size === null) return "file gone";
  if (size < 1000) return `${size} B`;
  const units = ["kB", "MB", "GB"];
  let value = size;
  for (const unit of units) {
    value /= 1000;
    if (value < 1000 || unit === "GB") return `${value.toFixed(1)} ${unit}`;
  }
  return "";
}

function localDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const two = (number) => String(number).padStart(2, "0");
  const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
  return `${day} ${two(date.getHours())}:${two(date.getMinutes())}`;
}

function drawHistogram(histogram, threshold) {
  const top = Math.log10(1 + Math.max(1, ...histogram.counts));
  let over = 0;
  $("histogram-bars").replaceChildren(
    ...histogram.counts.map((count, bin) => {
      const low = histogram.edges[bin];
      const bar = element("div", "bar");
      bar.style.height = `${(100 * Math.log10(1 + count)) / top}%`;
      if (low >= threshold - 1e-9) {
        bar.classList.add("over");
        over += count;
      }
      bar.title = `${low.toFixed(2)} to ${histogram.edges[bin + 1].toFixed(2)}: ${count} images`;
      bar.addEventListener("click", () => navigate({ threshold: low.toFixed(2) }));
      return bar;
    })
  );
  $("histogram-caption").textContent =
    `Each image's nearest-neighbour score, ${histogram.edges[0].toFixed(2)} to 1 (count on a log scale): ` +
    `${over} of ${histogram.images} images at or above ${threshold}. Click a bar to set the threshold there.`;
}

function keeperOf(group) {
  return review.keep.get(group.group);
}

function movesOf(group) {
  return group.images.filter((image) => image.id !== keeperOf(group) && image.file_size !== null);
}

function copyTile(group, image, position) {
  const node = element("figure", "tile copy");
  node.dataset.id = image.id;
  const picture = element("img");
  picture.src = image.thumbnail;
  picture.alt = image.path;
  node.append(picture);
  const caption = element("figcaption", "path");
  caption.append(element("span", "key", position < 9 ? String(position + 1) : ""), element("span", "role"));
  caption.append(element("span", "score", image.best_score.toFixed(4)), element("br"));
  caption.append(element("span", "name", image.path), element("br"));
  const size = image.width === null ? "?" : `${image.width}×${image.height}`;
  caption.append(element("span", "facts", `${size} · ${humanSize(image.file_size)}`), element("br"));
  caption.append(element("span", "facts", localDate(image.modified)));
  const twin = group.kind === "near" && image.sha256 && group.images.find((other) => other.sha256 === image.sha256);
  if (twin && twin.id !== image.id) {
    caption.append(element("br"), element("span", "same", `same bytes as copy ${group.images.indexOf(twin) + 1}`));
  }
  node.append(caption);
  node.title = image.path;
  node.addEventListener("click", () => {
    review.current = review.groups.indexOf(group);
    chooseKeeper(position);
  });
  return node;
}

function groupBox(group) {
  const box = element("div", "group");
  box.dataset.group = group.group;
  const what = group.kind === "exact" ? "same bytes" : `best pair ${group.pairs[0].score.toFixed(4)}`;
  const heading = element("h3", "", `group ${group.group} · ${group.size} copies · ${what} `);
  heading.append(element("span", "status"));
  const row = element("div", "grid");
  row.append(...group.images.map((image, position) => copyTile(group, image, position)));
  box.append(heading, row);
  return box;
}

function updateReview() {
  let copies = 0;
  review.groups.forEach((group, number) => {
    const box = document.querySelector(`#groups .group[data-group="${group.group}"]`);
    const skipped = review.skip.has(group.group);
    box.classList.toggle("current", number === review.current);
    box.classList.toggle("skipped", skipped);
    for (const node of box.querySelectorAll(".copy")) {
      const image = group.images.find((candidate) => String(candidate.id) === node.dataset.id);
      const role = skipped ? "" : image.id === keeperOf(group) ? "keep" : image.file_size === null ? "" : "move";
      node.classList.toggle("keep", role === "keep");
      node.classList.toggle("move", role === "move");
      node.querySelector(".role").textContent = role;
    }
    box.querySelector(".status").textContent = skipped ? "· skipped: nothing moves" : "";
    if (!skipped) copies += movesOf(group).length;
  });
  const groups = review.groups.filter((group) => !review.skip.has(group.group) && movesOf(group).length).length;
  $("apply-moves").textContent = `Apply… (${copies} copies)`;
  $("apply-moves").disabled = !review.data.quarantine || !groups;
}

function focusGroup(step) {
  review.current = Math.min(review.groups.length - 1, Math.max(0, review.current + step));
  updateReview();
  const box = document.querySelector(`#groups .group[data-group="${review.groups[review.current].group}"]`);
  box.scrollIntoView({ block: "nearest" });
}

function chooseKeeper(position) {
  const group = review.groups[review.current];
  const image = group.images[position];
  if (!image) return;
  if (image.file_size === null) {
    say(`${image.path} is gone; keep another copy`);
    return;
  }
  review.keep.set(group.group, image.id);
  review.skip.delete(group.group);
  updateReview();
}

function shiftKeeper(step) {
  const group = review.groups[review.current];
  const position = group.images.findIndex((image) => image.id === keeperOf(group));
  chooseKeeper((position + step + group.images.length) % group.images.length);
}

function toggleSkip() {
  const group = review.groups[review.current].group;
  if (review.skip.has(group)) review.skip.delete(group);
  else review.skip.add(group);
  updateReview();
}

function askToApply() {
  if (!review.data.quarantine) {
    say("this server moves nothing: start it with `dim-search serve INDEX_DIR --move-to DIR` to apply");
    return;
  }
  if ($("apply-moves").disabled) return;
  const chosen = review.groups.filter((group) => !review.skip.has(group.group) && movesOf(group).length);
  const copies = chosen.reduce((total, group) => total + movesOf(group).length, 0);
  $("confirm-text").textContent =
    `Move ${copies} copies from ${chosen.length} groups to ${review.data.quarantine}? The copy marked keep ` +
    `stays in each group; skipped groups stay as they are. \`dim-search undo\` puts every file back.`;
  $("confirm").returnValue = "";
  $("confirm").showModal();
}

async function applyMoves() {
  const groups = review.groups
    .filter((group) => !review.skip.has(group.group) && movesOf(group).length)
    .map((group) => ({ keep: keeperOf(group), move: movesOf(group).map((image) => image.id) }));
  say("moving…", true);
  try {
    const result = await api("/api/duplicates/apply", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Page-Token": TOKEN },
      body: JSON.stringify({ threshold: review.data.threshold, write: review.data.write, groups }),
    });
    await renderDuplicates();
    say(`moved ${result.moved} copies from ${result.groups} groups to ${result.quarantine}; ` +
        `\`${result.undo}\` puts them back`, true);
  } catch (error) {
    say(error.message);
  }
}

function onReviewKey(event) {
  if ($("duplicates").hidden || !review || !review.groups.length || $("confirm").open) return;
  if (event.altKey || event.ctrlKey || event.metaKey || event.target.closest("input, select, textarea")) return;
  const keys = {
    j: () => focusGroup(1), ArrowDown: () => focusGroup(1), k: () => focusGroup(-1), ArrowUp: () => focusGroup(-1),
    ArrowRight: () => shiftKeeper(1), ArrowLeft: () => shiftKeeper(-1), s: toggleSkip, a: askToApply,
  };
  if (keys[event.key]) keys[event.key]();
  else if (/^[1-9]$/.test(event.key)) chooseKeeper(parseInt(event.key, 10) - 1);
  else return;
  event.preventDefault();
}

async function renderDuplicates() {
  show("duplicates");
  const query = params();
  const threshold = query.get("threshold") || String(info ? info.default_threshold : 0.95);
  $("threshold").value = threshold;
  $("groups-info").textContent = "searching…";
  const search = new URLSearchParams({ threshold });
  if (query.get("keep")) search.set("keep", query.get("keep"));
  const [data, histogram] = await Promise.all([
    api(`/api/duplicates?${search}`),
    api("/api/duplicates/histogram"),
  ]);
  if (!$("keep").options.length) {
    for (const rule of data.keep_rules) $("keep").append(element("option", "", rule));
  }
  $("keep").value = data.keep;
  drawHistogram(histogram, data.threshold);
  const groups = [...data.exact, ...data.near];
  review = { data, groups, current: 0, keep: new Map(), skip: new Set() };
  for (const group of groups) {
    const keeper = group.images.find((image) => image.action === "keep");
    if (keeper) review.keep.set(group.group, keeper.id);
    else review.skip.add(group.group); // no copy left to keep
  }
  $("groups-info").textContent =
    `${data.exact.length} groups of exact duplicates, ` +
    `${data.near.length} of near-duplicates (cosine ≥ ${data.threshold})`;
  const sections = [];
  for (const [kind, title] of [["exact", "Exact duplicates (same bytes)"], ["near", "Near-duplicates"]]) {
    if (!data[kind].length) continue;
    const row = element("div", "kind-groups");
    row.append(...data[kind].map(groupBox));
    sections.push(element("h2", "section-title", title), row);
  }
  $("groups").replaceChildren(...sections);
  $("apply-moves").title = data.quarantine
    ? `moves the copies not kept to ${data.quarantine}`
    : "start the server with --move-to DIR to move copies";
  if (groups.length) updateReview();
  else $("apply-moves").disabled = true;
}

async function searchUpload(file) {
  if (!file) return;
  if (info && file.size > info.max_upload_bytes) {
    say(`${file.name} is larger than ${Math.round(info.max_upload_bytes / 1048576)} MB; choose a smaller image`);
    return;
  }
  say(`searching with ${file.name}…`);
  const form = new FormData();
  form.append("image", file);
  try {
    const data = await api(`/api/search?k=${currentK()}`, { method: "POST", body: form });
    history.pushState(null, "", `?${new URLSearchParams({ upload: data.query.name, k: currentK() })}`);
    renderResults({ id: null, src: URL.createObjectURL(file), label: `uploaded: ${data.query.name}` }, data.results, [
      `${data.results.length} nearest, cosine similarity (an uploaded query is not part of a shared link)`,
    ]);
    say("");
  } catch (error) {
    say(error.message);
  }
}

async function route() {
  say("");
  const query = params();
  $("k").value = String(currentK());
  try {
    if (query.get("id") !== null) await renderNeighbours(query.get("id"));
    else if (query.get("tab") === "duplicates") await renderDuplicates();
    else if (query.get("upload") !== null) navigate({ upload: null }, true); // its results were not kept
    else await renderBrowse();
  } catch (error) {
    say(error.message);
  }
}

async function start() {
  info = await api("/api/info");
  $("summary").textContent = `${info.images} images · ${info.model} · ${info.index_type}`;
  for (const folder of info.folders) {
    const option = element("option", "", `${folder.name || "(top level)"} (${folder.count})`);
    option.value = folder.name;
    if (folder.name) $("folder").append(option);
  }
  $("folder").addEventListener("change", () => navigate({ folder: $("folder").value, page: null, id: null }));
  $("k").addEventListener("change", () => navigate({ k: $("k").value }));
  $("tab-browse").addEventListener("click", () => navigate({ tab: null, id: null, upload: null }));
  $("tab-duplicates").addEventListener("click", () => navigate({ tab: "duplicates", id: null, upload: null }));
  $("apply-threshold").addEventListener("click", () => navigate({ threshold: $("threshold").value }));
  $("keep").addEventListener("change", () => navigate({ keep: $("keep").value }));
  $("apply-moves").addEventListener("click", askToApply);
  $("confirm").addEventListener("close", () => {
    if ($("confirm").returnValue === "move") applyMoves();
  });
  document.addEventListener("keydown", onReviewKey);
  $("upload").addEventListener("change", (event) => searchUpload(event.target.files[0]));
  $("home").addEventListener("click", (event) => {
    event.preventDefault();
    history.pushState(null, "", window.location.pathname);
    route();
  });
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    $("drop-hint").hidden = false;
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) $("drop-hint").hidden = true;
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    $("drop-hint").hidden = true;
    searchUpload(event.dataTransfer.files[0]);
  });
  window.addEventListener("popstate", route);
  await route();
}

start().catch((error) => say(error.message));
