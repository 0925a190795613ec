// Progressive enhancement of the photo search form: everything works without this file.
// Adds: drop and paste a photo, an instant preview, downscaling of huge photos before upload (recognition needs
// detail, so ~1600 px is kept; the server enforces its own limits), a "Searching…" status, and "Load more" in place.
(function () {
  "use strict";
  var MAX_SIDE = 1600;
  var form = document.getElementById("photo-search");
  var status = document.getElementById("search-status");

  function say(text) { if (status) { status.textContent = text; } }

  function downscaled(file) {
    // createImageBitmap applies EXIF orientation (imageOrientation "from-image" is the default).
    if (!window.createImageBitmap || !file.type.startsWith("image/")) { return Promise.resolve(file); }
    return createImageBitmap(file).then(function (bitmap) {
      var scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
      if (scale >= 1) { return file; }
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(bitmap.width * scale);
      canvas.height = Math.round(bitmap.height * scale);
      canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) {
        canvas.toBlob(function (blob) {
          resolve(blob ? new File([blob], (file.name || "photo").replace(/\.\w+$/, "") + ".jpg", {type: "image/jpeg"}) : file);
        }, "image/jpeg", 0.9);
      });
    }, function () { return file; });  // a format the browser cannot draw: the server decides
  }

  function submitWith(targetForm, input, file) {
    say("Preparing your photo…");
    return downscaled(file).then(function (ready) {
      var transfer = new DataTransfer();
      transfer.items.add(ready);
      input.files = transfer.files;
      var preview = document.getElementById("photo-preview");
      if (preview && targetForm === form) {
        preview.src = URL.createObjectURL(ready);
        document.getElementById("crop-frame").hidden = false;
        var box = form.querySelector('input[name="box"]');
        if (box) { box.value = ""; }  // a new photo: the old box means nothing for it
      }
      say("Searching…");
      targetForm.submit();
    });
  }

  // Every photo input (the page's form, the header's quick search) searches as soon as a photo is chosen.
  document.querySelectorAll('input[type="file"][name="image"], input[type="file"][name="camera"]').forEach(function (input) {
    input.addEventListener("change", function () {
      if (input.files && input.files[0]) {
        var other = input.form.querySelector(input.name === "image" ? 'input[name="camera"]' : 'input[name="image"]');
        if (other) { other.value = ""; }
        submitWith(input.form, input, input.files[0]);
      }
    });
  });

  if (form) {
    var input = form.querySelector('input[name="image"]');
    var zone = document.getElementById("dropzone");
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      var file = event.dataTransfer.files[0];
      if (file) { submitWith(form, input, file); } else { say("Drop a photo file."); }
    });
    document.addEventListener("paste", function (event) {
      var items = (event.clipboardData || {}).items || [];
      for (var i = 0; i < items.length; i++) {
        if (items[i].kind === "file" && items[i].type.startsWith("image/")) {
          event.preventDefault();
          submitWith(form, input, items[i].getAsFile());
          return;
        }
      }
    });
    // Changing a filter re-runs the current search (the photo is kept on the server by its handle).
    var params = new URLSearchParams(window.location.search);
    if (params.get("q") || params.get("image_id")) {
      form.querySelectorAll("fieldset.filters select, fieldset.filters input").forEach(function (field) {
        field.addEventListener("change", function () {
          var next = new URLSearchParams();
          ["q", "image_id", "box"].forEach(function (key) { if (params.get(key)) { next.set(key, params.get(key)); } });
          new FormData(form).forEach(function (value, key) {
            if (["category", "min_price", "max_price", "in_stock"].indexOf(key) >= 0 && value !== "") { next.set(key, value); }
          });
          say("Searching…");
          window.location.assign(form.action + "?" + next.toString());  // back to page 1
        });
      });
    }
  }

  // The crop box over the preview: drag it (or its corners) with a pointer, or move it with the arrow keys and
  // resize it with Shift+arrows (WCAG 2.2 "dragging movements": never pointer-only). Letting go, or Enter,
  // searches that part of the photo again from page 1, as the API's `box` (fractions of the photo).
  var cropBox = document.getElementById("crop-box");
  var here = new URLSearchParams(window.location.search);
  if (cropBox && here.get("q")) {
    var frame = document.getElementById("crop-frame");
    var STEP = 0.02, MIN = 0.05;
    var box = (here.get("box") || "0,0,1,1").split(",").map(Number);
    if (box.length !== 4 || box.some(isNaN)) { box = [0, 0, 1, 1]; }
    cropBox.hidden = false;
    document.getElementById("crop-help").hidden = false;

    var clamp = function (v, lo, hi) { return Math.min(hi, Math.max(lo, v)); };
    var draw = function () {
      cropBox.style.left = box[0] * 100 + "%";
      cropBox.style.top = box[1] * 100 + "%";
      cropBox.style.width = (box[2] - box[0]) * 100 + "%";
      cropBox.style.height = (box[3] - box[1]) * 100 + "%";
    };
    var search = function () {
      var next = new URLSearchParams(here);
      next.delete("page");
      var whole = box[0] <= 0 && box[1] <= 0 && box[2] >= 1 && box[3] >= 1;
      if (whole) { next.delete("box"); } else { next.set("box", box.map(function (v) { return v.toFixed(4); }).join(",")); }
      say("Searching…");
      window.location.assign(window.location.pathname + "?" + next.toString());
    };
    var move = function (dx, dy) {
      var w = box[2] - box[0], h = box[3] - box[1];
      box[0] = clamp(box[0] + dx, 0, 1 - w); box[1] = clamp(box[1] + dy, 0, 1 - h);
      box[2] = box[0] + w; box[3] = box[1] + h;
    };
    var resize = function (edge, dx, dy) {
      if (edge.indexOf("w") >= 0) { box[0] = clamp(box[0] + dx, 0, box[2] - MIN); }
      if (edge.indexOf("e") >= 0) { box[2] = clamp(box[2] + dx, box[0] + MIN, 1); }
      if (edge.indexOf("n") >= 0) { box[1] = clamp(box[1] + dy, 0, box[3] - MIN); }
      if (edge.indexOf("s") >= 0) { box[3] = clamp(box[3] + dy, box[1] + MIN, 1); }
    };
    draw();

    var drag = null;
    cropBox.addEventListener("pointerdown", function (event) {
      event.preventDefault();
      cropBox.setPointerCapture(event.pointerId);
      drag = {edge: event.target.dataset.edge || "", x: event.clientX, y: event.clientY};
    });
    cropBox.addEventListener("pointermove", function (event) {
      if (!drag) { return; }
      var rect = frame.getBoundingClientRect();
      var dx = (event.clientX - drag.x) / rect.width, dy = (event.clientY - drag.y) / rect.height;
      drag.x = event.clientX; drag.y = event.clientY;
      if (drag.edge) { resize(drag.edge, dx, dy); } else { move(dx, dy); }
      draw();
    });
    cropBox.addEventListener("pointerup", function () { if (drag) { drag = null; search(); } });
    cropBox.addEventListener("keydown", function (event) {
      var keys = {ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP]};
      if (event.key === "Enter") { event.preventDefault(); search(); return; }
      if (!keys[event.key]) { return; }
      event.preventDefault();
      var d = keys[event.key];
      if (event.shiftKey) { resize("se", d[0], d[1]); } else { move(d[0], d[1]); }
      draw();
      say("Box " + Math.round((box[2] - box[0]) * 100) + "% × " + Math.round((box[3] - box[1]) * 100) + "% of the photo. Press Enter to search this part.");
    });
    document.getElementById("crop-reset").addEventListener("click", function () { box = [0, 0, 1, 1]; draw(); search(); });
  }

  // "Load more": fetch the next page and append its cards, without leaving (or re-uploading).
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("#load-more");
    if (!link) { return; }
    event.preventDefault();
    say("Loading more…");
    fetch(link.href, {credentials: "same-origin"}).then(function (response) { return response.text(); }).then(function (html) {
      var page = new DOMParser().parseFromString(html, "text/html");
      var grid = document.getElementById("result-grid");
      var cards = page.querySelectorAll("#result-grid > article");
      cards.forEach(function (card) { grid.appendChild(document.importNode(card, true)); });
      var next = page.getElementById("load-more");
      if (next) { link.href = next.href; } else { link.parentNode.remove(); }
      say(grid.children.length + " close matches");
    }, function () { say("Could not load more results; try again."); });
  });
})();
