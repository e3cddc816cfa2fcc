// comicgen's reader: page turning, and a panel-by-panel mode.
//
// Pages: the arrows follow the reading direction (in a right-to-left story ← is the
// next page, as when turning a manga's pages); Space and PageDown turn to the next
// page, Shift+Space and PageUp back; End goes to the last page, Home to the contents.
// A swipe turns the page on touch screens.
//
// Panel by panel (the "Panel by panel" button, or P; Escape leaves): the page is zoomed
// onto one frame at a time, in reading order, from the frames' own boxes (data-box, in
// page units: the geometry the PNG pages are painted from). Space, PageDown, the
// reading-direction arrow, a tap or a swipe step to the next frame, and past the last
// one to the next page's first; Shift+Space, PageUp, the other arrow, or a tap near the
// edge the story starts from step back. Home and End go to the page's first and last
// frame. The mode travels with the page turn in the address (#panels, #panels-last).
(function () {
  "use strict";
  var body = document.body;
  var rtl = body.getAttribute("data-direction") === "rtl";
  var page = document.querySelector("article.page");
  var panels = page ? Array.prototype.slice.call(page.querySelectorAll("figure.panel")) : [];
  var button = document.querySelector("button.panel-mode");
  var current = -1; // the frame shown in panel mode; -1: the whole page

  function go(target) {
    if (target) {
      window.location.href = target;
    }
  }

  function turn(forward, hash) {
    var target = body.getAttribute(forward ? "data-next" : "data-prev");
    if (!target) {
      return false;
    }
    if (hash && target !== "index.html") {
      target += hash;
    }
    go(target);
    return true;
  }

  function box(element) {
    return element.getAttribute("data-box").split(" ").map(Number);
  }

  function frame() {
    if (current < 0) {
      return;
    }
    var size = page.getAttribute("data-size").split(" ").map(Number);
    var view = page.parentElement;
    var vw = view.clientWidth;
    var vh = view.clientHeight;
    var k = page.offsetWidth / size[0]; // px per page unit, before zooming
    var b = box(panels[current]);
    var pad = 0.04 * Math.min(b[2], b[3]);
    var x = b[0] - pad;
    var y = b[1] - pad;
    var w = b[2] + 2 * pad;
    var h = b[3] + 2 * pad;
    var scale = Math.min(vw / (w * k), vh / (h * k));
    var tx = vw / 2 - (x + w / 2) * k * scale;
    var ty = vh / 2 - (y + h / 2) * k * scale;
    page.style.transform =
      "translate(" + tx + "px, " + ty + "px) scale(" + scale + ")";
    // only the current frame (and its border) shows: the rest of the page is clipped
    var edge = Math.min(pad, 0.006 * size[0]);
    page.style.clipPath =
      "inset(" + (b[1] - edge) * k + "px " + (size[0] - b[0] - b[2] - edge) * k + "px " +
      (size[1] - b[1] - b[3] - edge) * k + "px " + (b[0] - edge) * k + "px)";
    panels.forEach(function (panel, index) {
      if (index === current) {
        panel.setAttribute("aria-current", "true");
      } else {
        panel.removeAttribute("aria-current");
      }
    });
    body.setAttribute("data-panel", panels[current].getAttribute("data-panel"));
  }

  function show(index) {
    if (!panels.length) {
      return;
    }
    current = Math.max(0, Math.min(index, panels.length - 1));
    body.classList.add("panel-mode");
    if (button) {
      button.setAttribute("aria-pressed", "true");
    }
    if (window.location.hash.indexOf("#panels") !== 0) {
      history.replaceState(null, "", "#panels");
    }
    frame();
  }

  function leave() {
    current = -1;
    body.classList.remove("panel-mode");
    body.removeAttribute("data-panel");
    page.style.transform = "";
    page.style.clipPath = "";
    panels.forEach(function (panel) {
      panel.removeAttribute("aria-current");
    });
    if (button) {
      button.setAttribute("aria-pressed", "false");
    }
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  function step(forward) {
    if (forward) {
      if (current + 1 < panels.length) {
        show(current + 1);
      } else {
        turn(true, "#panels");
      }
    } else if (current > 0) {
      show(current - 1);
    } else {
      turn(false, "#panels-last");
    }
  }

  function next(forward) {
    if (current >= 0) {
      step(forward);
    } else {
      turn(forward, "");
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    var key = event.key;
    var handled = true;
    if (key === "ArrowRight" || key === "ArrowLeft") {
      next((key === "ArrowRight") !== rtl);
    } else if (key === " " || key === "Spacebar") {
      next(!event.shiftKey);
    } else if (key === "PageDown") {
      next(true);
    } else if (key === "PageUp") {
      next(false);
    } else if (key === "Home") {
      if (current >= 0) {
        show(0);
      } else {
        go("index.html");
      }
    } else if (key === "End") {
      if (current >= 0) {
        show(panels.length - 1);
      } else {
        go(body.getAttribute("data-last"));
      }
    } else if ((key === "p" || key === "P") && panels.length) {
      if (current >= 0) {
        leave();
      } else {
        show(0);
      }
    } else if (key === "Escape" && current >= 0) {
      leave();
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
    }
  });

  if (button && panels.length) {
    button.hidden = false;
    button.addEventListener("click", function (event) {
      event.stopPropagation();
      if (current >= 0) {
        leave();
      } else {
        show(0);
      }
    });
  }

  // A tap in panel mode steps on; near the edge the story starts from, it steps back.
  if (page) {
    page.parentElement.addEventListener("click", function (event) {
      if (current < 0) {
        return;
      }
      event.preventDefault();
      var width = page.parentElement.clientWidth;
      var fromStart = rtl ? width - event.clientX : event.clientX;
      step(fromStart > width * 0.25);
    });
  }

  // Swipes: towards the start of the line (left in ltr) goes forward.
  var touch = null;
  document.addEventListener(
    "touchstart",
    function (event) {
      touch = event.touches.length === 1 ? event.touches[0] : null;
      touch = touch && { x: touch.clientX, y: touch.clientY };
    },
    { passive: true }
  );
  document.addEventListener("touchend", function (event) {
    if (!touch || event.changedTouches.length !== 1) {
      return;
    }
    var dx = event.changedTouches[0].clientX - touch.x;
    var dy = event.changedTouches[0].clientY - touch.y;
    touch = null;
    if (Math.abs(dx) < 40 || Math.abs(dx) < 1.5 * Math.abs(dy)) {
      return;
    }
    event.preventDefault(); // no click after a swipe
    next((dx < 0) !== rtl);
  });

  window.addEventListener("resize", frame);
  if (window.location.hash === "#panels") {
    show(0);
  } else if (window.location.hash === "#panels-last") {
    show(panels.length - 1);
  }
})();
