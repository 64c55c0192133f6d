// dim-search serve: the page. Plain DOM code on the JSON API (/api/...), no build step.
// The view lives in the URL (?id=123&k=20, ?tab=duplicates&threshold=0.9, ?folder=x&page=2),
// so back/forward and shared links work. Text from the index is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const PER_PAGE = 60;
let info = null;

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

function say(text) {
  $("message").textContent = text || "";
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

async function renderDuplicates() {
  show("duplicates");
  const threshold = params().get("threshold") || String(info ? info.default_threshold : 0.95);
  $("threshold").value = threshold;
  $("groups-info").textContent = "searching…";
  const data = await api(`/api/duplicates?threshold=${encodeURIComponent(threshold)}`);
  $("groups-info").textContent = `${data.groups.length} groups at cosine ≥ ${data.threshold}`;
  $("groups").replaceChildren(
    ...data.groups.map((group, number) => {
      const box = element("div", "group");
      const best = group.pairs.length ? group.pairs[0].score.toFixed(4) : "";
      box.append(element("h3", "", `group ${number + 1}: ${group.size} images, best pair ${best}`));
      const row = element("div", "grid");
      row.append(...group.images.map((image) => tile(image, image.best_score)));
      box.append(row);
      return box;
    })
  );
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
