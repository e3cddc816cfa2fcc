// Keyboard navigation between pages. The arrows follow the reading direction:
// in a left-to-right story → is the next page and ← the previous one; in a
// right-to-left story (manga) ← is the next page, as when turning a manga's pages.
(function () {
  "use strict";
  var body = document.body;
  var rtl = body.getAttribute("data-direction") === "rtl";
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) {
      return;
    }
    var target = null;
    if (event.key === "ArrowRight") {
      target = body.getAttribute(rtl ? "data-prev" : "data-next");
    } else if (event.key === "ArrowLeft") {
      target = body.getAttribute(rtl ? "data-next" : "data-prev");
    } else if (event.key === "Home") {
      target = "index.html";
    }
    if (target) {
      event.preventDefault();
      window.location.href = target;
    }
  });
})();
