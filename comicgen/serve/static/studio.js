// comicgen serve: keeps an open page in step with the story file.
// Listens to the server's events; on a new build it fetches the page again and swaps
// only the parts that changed (the scroll position stays); shows the error overlay,
// the painting progress of each panel, and takes of a panel to choose from.
(function () {
  "use strict";
  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : null;
  }
  var token = meta("comicgen-token");
  var story = meta("comicgen-story");
  var version = Number(meta("comicgen-version") || 0);
  var studio = (window.comicgenStudio = {
    events: [], version: version, refreshes: 0, replaced: [], notices: [], connected: false
  });

  var overlay = document.getElementById("studio-overlay");
  if (!overlay) {
    overlay = document.createElement("div");
    overlay.id = "studio-overlay";
    overlay.setAttribute("role", "alert");
    overlay.appendChild(document.createElement("pre"));
    document.body.appendChild(overlay);
  }
  var badge = document.createElement("div");
  badge.id = "studio-badge";
  badge.innerHTML = '<span class="state">studio</span> · <a href="/_studio/characters">characters</a> · <a href="/?list">stories</a>';
  document.body.appendChild(badge);

  function showError(message) {
    overlay.querySelector("pre").textContent = message || "";
    overlay.classList.toggle("show", !!message);
  }
  function notice(message) {
    studio.notices.push(message);
    badge.querySelector(".state").textContent = message;
  }

  if (meta("comicgen-studio")) { // the story list or the character library
    var plain = new EventSource("/_studio/events");
    plain.addEventListener("library", function () { window.location.reload(); });
    return;
  }
  if (!story) { return; }

  var article = document.querySelector("article.page");
  var pageNumber = article ? Number(article.id.replace("page-", "")) : 1;
  // what the server sent last, per part of the page: the live elements carry our
  // decorations, so changes are found against the server's own HTML
  var sent = {};
  function parts(doc) {
    var out = {};
    var page = doc.querySelector("article.page");
    if (page) {
      Array.prototype.forEach.call(page.children, function (el, i) {
        out["page:" + i] = el;
      });
      out.count = page.children.length;
    }
    ["nav.pager", "header.masthead", "main section.cover", "main section.thumbnails"].forEach(
      function (sel) { var el = doc.querySelector(sel); if (el) { out[sel] = el; } });
    return out;
  }
  (function snapshot() {
    var p = parts(document);
    Object.keys(p).forEach(function (k) { sent[k] = k === "count" ? p[k] : p[k].outerHTML; });
  })();

  var latest = null;
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.pathname, { cache: "no-store" }).then(function (response) {
      if (response.status === 404) { window.location.href = "index.html"; return null; }
      return response.text();
    }).then(function (text) {
      if (text === null) { return; }
      var doc = new DOMParser().parseFromString(text, "text/html");
      var got = Number((doc.querySelector('meta[name="comicgen-version"]') || {}).content || 0);
      if (!document.querySelector("main") || !doc.querySelector("main")) {
        window.location.reload();
        return;
      }
      patch(doc);
      version = studio.version = Math.max(version, got);
      studio.refreshes += 1;
      document.title = doc.title;
    }).catch(function (err) {
      notice("update failed: " + err);
    }).then(function () {
      busy = false;
      if (latest && latest.version > version) { refresh(); }
      else if (latest) { mark(latest.panels); }
    });
  }

  function patch(doc) {
    var fresh = parts(doc);
    var page = document.querySelector("article.page");
    var newPage = doc.querySelector("article.page");
    if (page && newPage) {
      ["style", "data-layout", "data-size", "aria-label"].forEach(function (a) {
        if (newPage.getAttribute(a) !== page.getAttribute(a)) {
          page.setAttribute(a, newPage.getAttribute(a));
        }
      });
      if (fresh.count !== sent.count) {
        page.replaceChildren.apply(page, Array.prototype.map.call(
          newPage.children, function (el) { return document.importNode(el, true); }));
        studio.replaced.push("page");
        Array.prototype.forEach.call(page.querySelectorAll("figure.panel"), decorate);
      } else {
        for (var i = 0; i < fresh.count; i++) {
          var key = "page:" + i;
          if (fresh[key].outerHTML !== sent[key]) {
            var node = document.importNode(fresh[key], true);
            page.children[i].replaceWith(node);
            studio.replaced.push(node.getAttribute("data-panel") || node.tagName.toLowerCase());
            if (node.matches("figure.panel")) { decorate(node); }
          }
        }
      }
    }
    ["nav.pager", "header.masthead", "main section.cover", "main section.thumbnails"].forEach(
      function (sel) {
        var el = document.querySelector(sel);
        if (el && fresh[sel] && fresh[sel].outerHTML !== sent[sel]) {
          el.replaceWith(document.importNode(fresh[sel], true));
          studio.replaced.push(sel);
        }
      });
    ["prev", "next"].forEach(function (a) {
      var v = doc.body.getAttribute("data-" + a);
      if (v) { document.body.setAttribute("data-" + a, v); }
      else { document.body.removeAttribute("data-" + a); }
    });
    sent = {};
    Object.keys(fresh).forEach(function (k) {
      sent[k] = k === "count" ? fresh[k] : fresh[k].outerHTML;
    });
  }

  function figure(id) {
    return document.querySelector('figure.panel[data-panel="' + CSS.escape(id) + '"]');
  }
  function mark(panels) {
    Object.keys(panels || {}).forEach(function (id) {
      var el = figure(id);
      if (el) { el.setAttribute("data-studio", panels[id].status); }
    });
  }
  function decorate(el) {
    if (el.querySelector(".studio-takes-button")) { return; }
    var bar = document.createElement("span");
    bar.className = "studio-progress";
    el.appendChild(bar);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "studio-takes-button";
    button.textContent = "Takes";
    button.title = "Paint other takes of panel " + el.getAttribute("data-panel");
    button.addEventListener("click", function (event) {
      event.preventDefault();
      openTakes(el.getAttribute("data-panel"));
    });
    el.appendChild(button);
  }
  Array.prototype.forEach.call(document.querySelectorAll("figure.panel"), decorate);

  // -- takes ---------------------------------------------------------------------------
  var dialog = document.createElement("dialog");
  dialog.id = "studio-takes";
  dialog.innerHTML =
    '<form method="dialog" class="head"><strong class="title"></strong> ' +
    '<label>takes <select name="count"><option>2</option><option>3</option>' +
    '<option selected>4</option><option>6</option><option>8</option></select></label> ' +
    '<button type="button" class="paint">Paint</button> <button value="close">Close</button></form>' +
    '<p class="hint">Click a take to keep it: its seed goes into the story.</p><ol class="slots"></ol>';
  document.body.appendChild(dialog);
  var takesPanel = null;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Comicgen-Token": token },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { throw new Error(data.error || r.status); }
        return data;
      });
    });
  }
  function openTakes(panel) {
    takesPanel = panel;
    dialog.querySelector(".title").textContent = "Takes of panel " + panel;
    dialog.querySelector(".slots").replaceChildren();
    if (!dialog.open) { dialog.showModal(); }
  }
  dialog.querySelector(".paint").addEventListener("click", function () {
    var count = Number(dialog.querySelector("select").value);
    post("/_studio/takes", { story: story, panel: takesPanel, count: count }).then(function (data) {
      var list = dialog.querySelector(".slots");
      list.replaceChildren();
      data.takes.forEach(function (t) {
        var li = document.createElement("li");
        li.setAttribute("data-take", t.take);
        li.setAttribute("data-seed", t.seed);
        li.className = t.ready ? "ready" : "queued";
        var img = document.createElement("img");
        img.alt = "take " + t.take;
        if (t.ready) { img.src = t.src; }
        var label = document.createElement("span");
        label.textContent = "take " + t.take + " · seed " + t.seed + (t.take === 1 ? " (now)" : "");
        li.append(img, label);
        li.addEventListener("click", function () { pick(t.take); });
        list.appendChild(li);
      });
    }).catch(function (err) { notice("takes: " + err.message); });
  });
  function pick(take) {
    var li = dialog.querySelector('.slots li[data-take="' + take + '"]');
    if (!li || !li.classList.contains("ready")) { return; }
    post("/_studio/pick", { story: story, panel: takesPanel, take: take }).then(function (data) {
      notice("panel " + takesPanel + ": seed " + data.seed + " written to the story");
      dialog.close();
    }).catch(function (err) { notice("pick: " + err.message); });
  }

  // -- events --------------------------------------------------------------------------
  var url = "/_studio/events?story=" + encodeURIComponent(story) + "&page=" + pageNumber;
  var source = new EventSource(url);
  source.addEventListener("open", function () { studio.connected = true; });
  source.addEventListener("state", function (event) {
    var state = JSON.parse(event.data);
    studio.events.push({ type: "state", version: state.version, error: state.error,
      t: performance.now() });
    latest = state;
    showError(state.error);
    if (state.version > version) { refresh(); } else { mark(state.panels); }
  });
  source.addEventListener("painting", function (event) {
    var data = JSON.parse(event.data);
    studio.events.push({ type: "painting", id: data.id, take: data.take, t: performance.now() });
    if (data.take == null) {
      var el = figure(data.id);
      if (el) { el.setAttribute("data-studio", "painting"); el.style.setProperty("--progress", "0"); }
    }
    badge.querySelector(".state").textContent =
      "painting " + data.id + (data.take != null ? " take " + data.take : "");
  });
  source.addEventListener("progress", function (event) {
    var data = JSON.parse(event.data);
    if (data.take == null) {
      var el = figure(data.id);
      if (el) { el.style.setProperty("--progress", String(data.step / data.total)); }
    }
    badge.querySelector(".state").textContent = "painting " + data.id +
      (data.take != null ? " take " + data.take : "") + " " + data.step + "/" + data.total;
  });
  source.addEventListener("painted", function (event) {
    var data = JSON.parse(event.data);
    studio.events.push({ type: "painted", id: data.id, take: data.take, seconds: data.seconds,
      t: performance.now() });
    var el = data.take == null ? figure(data.id) : null;
    if (el && data.src) {
      el.querySelector("img").src = data.src;
      el.setAttribute("data-studio", "done");
    }
  });
  source.addEventListener("dropped", function (event) {
    var data = JSON.parse(event.data);
    studio.events.push({ type: "dropped", id: data.id });
  });
  source.addEventListener("take", function (event) {
    var data = JSON.parse(event.data);
    studio.events.push({ type: "take", id: data.panel, take: data.take });
    if (data.panel !== takesPanel) { return; }
    var li = dialog.querySelector('.slots li[data-take="' + data.take + '"]');
    if (li) {
      li.className = "ready";
      li.querySelector("img").src = data.src;
    }
    if (data.complete) { badge.querySelector(".state").textContent = "studio"; }
  });
  source.addEventListener("notice", function (event) {
    notice(JSON.parse(event.data).message);
  });
})();
