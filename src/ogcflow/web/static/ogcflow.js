/* ogcflow's HTML pages: credentials kept in the browser session, the execute form generated from a process
   description, the live job page and the map of STAC items. Plain JavaScript, no build step. */
(function () {
  "use strict";
  var O = window.ogcflow = {};
  // errors of these pages, kept for the browser tests (and for a look in the console)
  O.errors = [];
  window.addEventListener("error", function (e) { O.errors.push(String(e.message)); });
  window.addEventListener("unhandledrejection", function (e) { O.errors.push(String(e.reason && e.reason.stack || e.reason)); });
  var KEY = "ogcflow-api-key";

  // -- credentials: an API key (or a bearer token) kept in sessionStorage, sent as the server accepts them ----

  O.key = function () { try { return sessionStorage.getItem(KEY) || ""; } catch (e) { return ""; } };
  O.setKey = function (value) {
    try { if (value) { sessionStorage.setItem(KEY, value); } else { sessionStorage.removeItem(KEY); } } catch (e) {}
  };
  /** Headers with the credentials of the session: ``X-API-Key`` for keys, ``Authorization`` for tokens. */
  O.headers = function (extra) {
    var h = Object.assign({}, extra || {});
    var k = O.key();
    if (k) {
      if (k.split(".").length === 3) { h["Authorization"] = "Bearer " + k; } else { h["X-API-Key"] = k; }
    }
    return h;
  };
  O.fetch = function (url, opts) {
    opts = Object.assign({}, opts || {});
    opts.headers = O.headers(Object.assign({ "Accept": "application/json" }, opts.headers || {}));
    opts.credentials = "same-origin";
    return fetch(url, opts);
  };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) { return; }
      if (k === "text") { e.textContent = v; } else if (k === "class") { e.className = v; }
      else if (k.slice(0, 2) === "on") { e.addEventListener(k.slice(2), v); }
      else { e.setAttribute(k, v === true ? "" : v); }
    });
    (children || []).forEach(function (c) { if (c) { e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return e;
  }
  O.el = el;

  /** The header's credentials box. */
  O.authBox = function (box) {
    function draw() {
      box.innerHTML = "";
      if (O.key()) {
        box.appendChild(el("span", { id: "auth-state", text: "API key set" }));
        box.appendChild(el("button", { type: "button", id: "auth-forget", text: "forget", onclick: function () {
          O.setKey(""); draw();
        } }));
      } else {
        var input = el("input", { type: "password", id: "api-key", placeholder: "API key or token", size: 18,
                                  autocomplete: "off" });
        var form = el("form", { id: "auth-form", onsubmit: function (ev) {
          ev.preventDefault(); O.setKey(input.value.trim()); location.reload();
        } }, [input, el("button", { type: "submit", text: "use" })]);
        box.appendChild(form);
      }
    }
    draw();
  };

  /** On a 401 page: the page again with the session's credentials (a browser navigation cannot send them). */
  O.recover = function () {
    if (!O.key()) { return; }
    var url = new URL(location.href);
    url.searchParams.set("f", "html");
    O.fetch(url.toString(), { headers: { "Accept": "text/html" } }).then(function (resp) {
      if (resp.status === 401) { O.setKey(""); return null; }
      return resp.text();
    }).then(function (html) {
      if (html !== null) { document.open(); document.write(html); document.close(); }
    });
  };

  // -- the execute form ---------------------------------------------------------------------------------------

  function isBBoxObject(s) {
    return s && s.type === "object" && s.properties && s.properties.bbox && s.properties.bbox.type === "array";
  }
  function looksLikeBBoxString(key, desc, s) {
    if (!s || s.type !== "string" || s.enum) { return false; }
    var name = (key + " " + (desc.title || "")).toLowerCase();
    return /\b(bbox|aoi|bounding box|area of interest)\b/.test(name) || /\bbounding box\b/i.test(desc.description || "");
  }
  function isBinary(s) {
    return s && s.type === "string" && (s.contentEncoding === "base64" || s.contentEncoding === "binary");
  }
  function isReference(s) { return s && s.type === "string" && (s.format === "uri" || s.format === "url"); }
  function scalarType(s) {
    var t = s && s.type;
    if (Array.isArray(t)) { t = t.filter(function (x) { return x !== "null"; })[0]; }
    return t;
  }

  /** A widget of one value of ``schema``: {node, get(): value or undefined, set(value)}. */
  function widget(key, desc, schema, onchange, optional) {
    var s = schema || {};
    var t = scalarType(s);
    if (isBBoxObject(s)) { return bboxWidget(key, s, onchange, "object"); }
    if (looksLikeBBoxString(key, desc, s)) { return bboxWidget(key, s, onchange, "string"); }
    if (s.enum) {
      var sel = el("select", { name: key, onchange: onchange });
      if (optional) { sel.appendChild(el("option", { value: "", text: "(not set)" })); }
      s.enum.forEach(function (v, i) { sel.appendChild(el("option", { value: String(i), text: String(v) })); });
      return { node: sel, get: function () { return sel.value === "" ? undefined : s.enum[Number(sel.value)]; },
               set: function (v) { var i = s.enum.indexOf(v); sel.value = i < 0 ? (optional ? "" : "0") : String(i); } };
    }
    if (t === "boolean") {
      if (optional) {
        var tri = el("select", { name: key, onchange: onchange }, [el("option", { value: "", text: "(not set)" }),
          el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" })]);
        return { node: tri, get: function () { return tri.value === "" ? undefined : tri.value === "true"; },
                 set: function (v) { tri.value = v === true ? "true" : v === false ? "false" : ""; } };
      }
      var box = el("input", { type: "checkbox", name: key, onchange: onchange });
      return { node: box, get: function () { return box.checked; }, set: function (v) { box.checked = !!v; } };
    }
    if (t === "number" || t === "integer") {
      var num = el("input", { type: "number", name: key, step: t === "integer" ? "1" : "any",
                              min: s.minimum, max: s.maximum, oninput: onchange });
      return { node: num, get: function () { return num.value === "" ? undefined : Number(num.value); },
               set: function (v) { num.value = v === undefined || v === null ? "" : String(v); } };
    }
    if (isBinary(s)) { return binaryWidget(key, s, onchange); }
    if (t === "array") { return arrayWidget(key, desc, s.items || {}, onchange, s.minItems || 0); }
    if (t === "string") {
      var kind = isReference(s) ? "url" : "text";
      var txt = el("input", { type: kind, name: key, oninput: onchange, minlength: s.minLength,
                              maxlength: s.maxLength, placeholder: kind === "url" ? "https://..." :
                              (s.format || ""), size: 60 });
      return { node: txt, get: function () { return txt.value === "" ? undefined : txt.value; },
               set: function (v) { txt.value = v === undefined || v === null ? "" : String(v); } };
    }
    // objects, alternatives, anything else: JSON
    var area = el("textarea", { name: key, rows: 4, cols: 60, oninput: onchange, "class": "json" });
    return { node: area, get: function () {
               if (area.value.trim() === "") { return undefined; }
               try { area.classList.remove("invalid"); return JSON.parse(area.value); }
               catch (e) { area.classList.add("invalid"); return area.value; }
             },
             set: function (v) { area.value = v === undefined ? "" : JSON.stringify(v, null, 2); } };
  }

  /** A list that grows: one widget per item, add and remove buttons. */
  function arrayWidget(key, desc, itemSchema, onchange, minItems) {
    var list = el("ol", { "class": "array" });
    var items = [];
    function add(value) {
      var w = widget(key, desc, itemSchema, onchange, false);
      var li = el("li", {}, [w.node, el("button", { type: "button", "class": "remove", text: "remove",
        onclick: function () { list.removeChild(li); items.splice(items.indexOf(entry), 1); onchange(); } })]);
      var entry = { w: w, li: li };
      items.push(entry);
      list.appendChild(li);
      if (value !== undefined) { w.set(value); }
      return entry;
    }
    var addButton = el("button", { type: "button", "class": "add", text: "+ add", onclick: function () { add(); onchange(); } });
    var node = el("div", { "class": "array-input" }, [list, addButton]);
    return {
      node: node,
      get: function () {
        var out = items.map(function (e) { return e.w.get(); }).filter(function (v) { return v !== undefined; });
        return out.length ? out : undefined;
      },
      set: function (v) {
        items.slice().forEach(function (e) { list.removeChild(e.li); });
        items.length = 0;
        (Array.isArray(v) ? v : v === undefined ? [] : [v]).forEach(function (x) { add(x); });
        while (items.length < Math.max(1, minItems)) { add(); }
      },
    };
  }

  /** A binary input: by reference (a URL) or a local file sent base64-encoded. */
  function binaryWidget(key, s, onchange) {
    var media = s.contentMediaType || "application/octet-stream";
    var url = el("input", { type: "url", name: key, placeholder: "https://... (by reference)", size: 50, oninput: onchange });
    var encoded = null;
    var file = el("input", { type: "file", name: key + "-file", onchange: function () {
      var f = file.files[0];
      if (!f) { encoded = null; onchange(); return; }
      var reader = new FileReader();
      reader.onload = function () { encoded = String(reader.result).split(",", 2)[1]; onchange(); };
      reader.readAsDataURL(f);
    } });
    return { node: el("span", {}, [url, " or ", file]),
             get: function () {
               if (url.value) { return { href: url.value, type: media }; }
               if (encoded !== null) { return { value: encoded, mediaType: media, encoding: "base64" }; }
               return undefined;
             },
             set: function (v) { if (v && v.href) { url.value = v.href; } } };
  }

  /** A bounding box, typed (four numbers) or drawn on the map: a bbox object or a "minx,miny,maxx,maxy" string. */
  function bboxWidget(key, s, onchange, form) {
    var names = ["minx", "miny", "maxx", "maxy"];
    var fields = names.map(function (n) {
      return el("input", { type: "number", step: "any", name: key + "-" + n, placeholder: n, size: 9, oninput: function () { sync(); onchange(); } });
    });
    var crs = null;
    if (form === "object" && s.properties.crs && s.properties.crs.enum) {
      crs = el("select", { name: key + "-crs", onchange: onchange });
      s.properties.crs.enum.forEach(function (c) { crs.appendChild(el("option", { value: c, text: c.split("/").slice(-1)[0] })); });
    }
    var mapDiv = el("div", { "class": "map bbox-map", id: "bbox-map-" + key });
    var drawButton = el("button", { type: "button", "class": "draw", text: "draw on the map" });
    var node = el("div", { "class": "bbox-input" }, [el("div", {}, fields.concat(crs ? [crs] : []).concat([drawButton])), mapDiv]);
    var map = null, rect = null;
    function values() {
      var v = fields.map(function (f) { return f.value === "" ? NaN : Number(f.value); });
      return v.some(isNaN) ? null : v;
    }
    function sync() {
      var v = values();
      if (!map) { return; }
      if (rect) { map.removeLayer(rect); rect = null; }
      if (v) {
        rect = L.rectangle([[v[1], v[0]], [v[3], v[2]]], { color: "#d9480f", weight: 2, fillOpacity: 0.1, className: "bbox" }).addTo(map);
        map.fitBounds(rect.getBounds(), { maxZoom: 12, padding: [20, 20] });
      }
    }
    function ensureMap() {
      if (map || !window.L) { return; }
      map = O.baseMap(mapDiv);
      map.setView([20, 0], 1);
      var start = null, drawing = false, temp = null;
      drawButton.addEventListener("click", function () {
        drawing = !drawing;
        drawButton.classList.toggle("active", drawing);
        mapDiv.classList.toggle("drawing", drawing);
        if (drawing) { map.dragging.disable(); } else { map.dragging.enable(); }
      });
      map.on("mousedown", function (ev) { if (drawing) { start = ev.latlng; } });
      map.on("mousemove", function (ev) {
        if (!drawing || !start) { return; }
        if (temp) { map.removeLayer(temp); }
        temp = L.rectangle(L.latLngBounds(start, ev.latlng), { color: "#d9480f", weight: 1, dashArray: "4" }).addTo(map);
      });
      map.on("mouseup", function (ev) {
        if (!drawing || !start) { return; }
        var b = L.latLngBounds(start, ev.latlng);
        start = null;
        if (temp) { map.removeLayer(temp); temp = null; }
        var r = function (x) { return Math.round(x * 1e5) / 1e5; };
        [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].forEach(function (x, i) { fields[i].value = String(r(x)); });
        drawing = false; drawButton.classList.remove("active"); mapDiv.classList.remove("drawing"); map.dragging.enable();
        sync(); onchange();
      });
      sync();
    }
    setTimeout(ensureMap, 0);
    return {
      node: node,
      get: function () {
        var v = values();
        if (!v) { return undefined; }
        if (form === "string") { return v.join(","); }
        var out = { bbox: v };
        if (crs) { out.crs = crs.value; }
        return out;
      },
      set: function (v) {
        var nums = null;
        if (typeof v === "string") { nums = v.split(",").map(Number); }
        else if (v && Array.isArray(v.bbox)) { nums = v.bbox; if (crs && v.crs) { crs.value = v.crs; } }
        if (nums && nums.length >= 4 && !nums.some(isNaN)) {
          var four = nums.length === 6 ? [nums[0], nums[1], nums[3], nums[4]] : nums.slice(0, 4);
          four.forEach(function (x, i) { fields[i].value = String(x); });
        }
        sync();
      },
    };
  }

  /** The execute form of ``process`` (its description), filled with ``example``, in ``root``. */
  O.executeForm = function (root, process, example, base) {
    var inputs = process.inputs || {};
    var widgets = {};
    var preview = el("pre", { id: "request-preview" });
    var errorBox = el("div", { id: "execute-error", "class": "error", hidden: true });
    var resultBox = el("div", { id: "execute-result", hidden: true });
    var options = process.jobControlOptions || [];
    var modes = ["async-execute", "sync-execute"].filter(function (m) { return options.indexOf(m) >= 0; });
    var modeSelect = el("select", { id: "mode", name: "mode", onchange: update });
    modes.forEach(function (m) {
      modeSelect.appendChild(el("option", { value: m, text: m === "async-execute" ? "asynchronous: a job, follow it on its page" : "synchronous: wait for the results" }));
    });
    function request() {
      var body = { inputs: {} };
      Object.keys(widgets).forEach(function (k) {
        var v = widgets[k].get();
        if (v !== undefined) { body.inputs[k] = v; }
      });
      return body;
    }
    function headers() {
      var h = { "Content-Type": "application/json" };
      if (modeSelect.value === "async-execute") { h["Prefer"] = "respond-async"; }
      return h;
    }
    function update() {
      var h = headers();
      preview.textContent = "POST " + base + "/processes/" + process.id + "/execution\n" +
        Object.keys(h).map(function (k) { return k + ": " + h[k]; }).join("\n") + "\n\n" +
        JSON.stringify(request(), null, 2);
    }
    var table = el("div", { "class": "form-fields" });
    Object.keys(inputs).forEach(function (key) {
      var desc = inputs[key];
      var schema = desc.schema || {};
      var optional = (desc.minOccurs === 0) || schema["default"] !== undefined;
      var many = desc.maxOccurs === "unbounded" || desc.maxOccurs > 1;
      var w = many ? arrayWidget(key, desc, schema, update, desc.minOccurs || 0) : widget(key, desc, schema, update, optional);
      widgets[key] = w;
      var start = example && example.inputs ? example.inputs[key] : undefined;
      if (start !== undefined || many || (scalarType(schema) === "array")) { w.set(start); }
      var label = el("label", { "for": "input-" + key }, [el("code", { text: key }), optional ? el("small", { text: " optional" }) : el("small", { "class": "required", text: " required" })]);
      var help = el("div", { "class": "help" }, [desc.title && desc.title !== key ? el("strong", { text: desc.title + ". " }) : null, desc.description || ""]);
      if (schema["default"] !== undefined) { help.appendChild(el("small", { text: " Default: " + JSON.stringify(schema["default"]) })); }
      table.appendChild(el("div", { "class": "field", id: "input-" + key }, [label, el("div", {}, [w.node, help])]));
    });
    var submit = el("button", { type: "submit", id: "execute-submit", text: "Execute" });
    var form = el("form", { id: "execute", novalidate: true, oninput: update, onchange: update, onsubmit: function (ev) {
      ev.preventDefault();
      errorBox.hidden = true; resultBox.hidden = true;
      submit.disabled = true;
      var sync = modeSelect.value === "sync-execute";
      O.fetch(base + "/processes/" + encodeURIComponent(process.id) + "/execution", {
        method: "POST", headers: headers(), body: JSON.stringify(request()),
      }).then(function (resp) {
        var loc = resp.headers.get("Location");
        var monitor = /<([^>]+)>;\s*rel="monitor"/.exec(resp.headers.get("Link") || "");
        if (resp.status === 201 && loc) { location.href = loc + (loc.indexOf("?") < 0 ? "?f=html" : "&f=html"); return; }
        var type = resp.headers.get("Content-Type") || "";
        return (type.indexOf("json") >= 0 ? resp.json() : resp.text()).then(function (data) {
          submit.disabled = false;
          if (!resp.ok) {
            errorBox.hidden = false;
            errorBox.textContent = "HTTP " + resp.status + ": " + (data && data.detail ? data.detail : JSON.stringify(data));
            return;
          }
          resultBox.hidden = false;
          resultBox.innerHTML = "";
          resultBox.appendChild(el("h3", { text: "Result (HTTP " + resp.status + ", " + type.split(";")[0] + ")" }));
          if (monitor) { resultBox.appendChild(el("p", {}, [el("a", { href: monitor[1] + "?f=html", id: "result-job", text: "the job" })])); }
          resultBox.appendChild(el("pre", { id: "result-body", text: typeof data === "string" ? data : JSON.stringify(data, null, 2) }));
          if (!sync) { return; }
        });
      }).catch(function (e) { submit.disabled = false; errorBox.hidden = false; errorBox.textContent = String(e); });
    } }, [table, el("div", { "class": "field" }, [el("label", { "for": "mode", text: "Execution" }), modeSelect]), submit, errorBox]);
    root.appendChild(form);
    root.appendChild(el("h3", { text: "The request" }));
    root.appendChild(preview);
    root.appendChild(resultBox);
    update();
    return { request: request };
  };

  // -- the map ------------------------------------------------------------------------------------------------

  /** A Leaflet map with no base layer (offline): a plain background and a graticule. */
  O.baseMap = function (div) {
    var map = L.map(div, { attributionControl: false, worldCopyJump: false, minZoom: 1 });
    map.setView([20, 0], 1);  // a view before any layer: paths need one to be drawn
    var grid = L.layerGroup().addTo(map);
    function drawGrid() {
      grid.clearLayers();
      var b = map.getBounds();
      var span = Math.max(b.getEast() - b.getWest(), b.getNorth() - b.getSouth());
      var steps = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30];
      var step = steps.filter(function (s) { return span / s <= 12; })[0] || 30;
      var style = { color: "#9aa7bd", weight: 0.6, interactive: false };
      var south = Math.max(-85, b.getSouth()), north = Math.min(85, b.getNorth());
      var west = Math.max(-180, b.getWest()), east = Math.min(180, b.getEast());
      for (var x = Math.ceil(west / step) * step; x <= east; x += step) {
        grid.addLayer(L.polyline([[south, x], [north, x]], style));
      }
      for (var y = Math.ceil(south / step) * step; y <= north; y += step) {
        grid.addLayer(L.polyline([[y, west], [y, east]], style));
      }
    }
    map.on("moveend zoomend", drawGrid);
    map.whenReady(drawGrid);
    return map;
  };

  function isHttp(href) { return typeof href === "string" && /^https?:\/\//i.test(href); }

  /** An asset's href a browser can load: http(s) or relative, an http(s) alternate, or the API's copy. */
  function browserHref(asset, item, files) {
    var href = asset.href;
    if (isHttp(href)) { return href; }
    if (typeof href === "string" && href.indexOf("://") < 0 && item.__self) { return new URL(href, item.__self).toString(); }
    var alt = asset.alternate || {};
    var found = Object.keys(alt).map(function (k) { return alt[k] && alt[k].href; }).filter(isHttp)[0];
    if (found) { return found; }
    return files[href] || null;
  }

  function quicklook(item) {
    var assets = item.assets || {};
    var keys = Object.keys(assets);
    var pick = keys.filter(function (k) { return (assets[k].roles || []).indexOf("thumbnail") >= 0 || (assets[k].roles || []).indexOf("overview") >= 0; })[0] ||
               keys.filter(function (k) { return /^(thumbnail|quicklook|overview|preview)$/.test(k); })[0];
    if (!pick) { return null; }
    var type = assets[pick].type || "";
    if (type && !/^image\/(png|jpeg|webp|gif)/.test(type)) { return null; }
    return assets[pick];
  }

  function itemBounds(item) {
    var b = item.bbox;
    if (Array.isArray(b) && b.length >= 4) {
      var f = b.length === 6 ? [b[0], b[1], b[3], b[4]] : b;
      return L.latLngBounds([f[1], f[0]], [f[3], f[2]]);
    }
    if (item.geometry) { return L.geoJSON(item.geometry).getBounds(); }
    return null;
  }

  /** STAC items (GeoJSON features) of the outputs of a results document (values and fetched references). */
  O.itemsOf = function (doc) {
    var found = [];
    var pending = [];
    function collect(v, self) {
      if (!v || typeof v !== "object") { return; }
      if (v.type === "FeatureCollection" && Array.isArray(v.features)) { v.features.forEach(function (f) { collect(f, self); }); return; }
      if (v.type === "Feature") { if (self) { v.__self = self; } found.push(v); return; }
      if (v.value !== undefined) { collect(v.value, self); return; }
      if (v.href && /json/.test(v.type || "")) {
        pending.push(O.fetch(v.href).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) { collect(d, v.href); }).catch(function () {}));
      }
    }
    Object.keys(doc || {}).forEach(function (k) { collect(doc[k]); });
    return Promise.all(pending).then(function () { return found; });
  };

  /** The map of ``items`` over the area of interest ``aoi`` ([minx, miny, maxx, maxy] or null). */
  O.itemsMap = function (div, items, aoi, files) {
    div.hidden = false;
    var map = O.baseMap(div);
    var bounds = null;
    function extend(b) { if (b && b.isValid()) { bounds = bounds ? bounds.extend(b) : L.latLngBounds(b.getSouthWest(), b.getNorthEast()); } }
    if (aoi) {
      var a = L.rectangle([[aoi[1], aoi[0]], [aoi[3], aoi[2]]], { color: "#d9480f", weight: 2, fill: false, dashArray: "6 4", className: "aoi" }).addTo(map);
      a.bindTooltip("area of interest");
      extend(a.getBounds());
    }
    var legend = el("ul", { "class": "map-legend" });
    items.forEach(function (item) {
      var ql = quicklook(item);
      var b = itemBounds(item);
      var qlHref = ql ? browserHref(ql, item, files || {}) : null;
      if (ql && qlHref && b) {
        L.imageOverlay(qlHref, b, { opacity: 0.85, className: "quicklook", alt: "quicklook of " + item.id }).addTo(map);
      }
      var fp = L.geoJSON(item.geometry || (b ? L.rectangle(b).toGeoJSON().geometry : null), {
        style: { color: "#0b6bcb", weight: 2, fillOpacity: ql ? 0 : 0.15, className: "footprint" },
      }).addTo(map);
      fp.bindPopup(item.id);
      extend(fp.getBounds());
      legend.appendChild(el("li", { "class": "item", "data-item": item.id }, [el("code", { text: item.id }), qlHref ? el("small", { text: " quicklook" }) : null]));
    });
    if (bounds) { map.fitBounds(bounds, { padding: [20, 20], maxZoom: 14 }); } else { map.setView([20, 0], 1); }
    div.parentNode.insertBefore(legend, div.nextSibling);
    return map;
  };

  // -- the live job page --------------------------------------------------------------------------------------

  var ACTIVE = ["accepted", "running"];

  /** Follows the job at ``url``: status, progress, message history with timings; results and map at the end. */
  O.jobPage = function (opts) {
    var url = opts.url, etag = null, last = opts.initial, steps = [], seen = {};
    var statusEl = document.getElementById("status");
    var progressEl = document.getElementById("progress");
    var progressText = document.getElementById("progress-text");
    var messageEl = document.getElementById("message");
    var stepsEl = document.getElementById("steps");
    var dismissButton = document.getElementById("dismiss");
    var started = Date.now();

    function note(info) {
      if (info.message && !seen[info.message]) {
        seen[info.message] = true;
        var now = Date.now();
        var prev = steps.length ? steps[steps.length - 1] : null;
        if (prev) { prev.li.querySelector(".took").textContent = ((now - prev.at) / 1000).toFixed(1) + " s"; }
        var li = el("li", {}, [el("span", { "class": "what", text: info.message }), " ", el("small", { "class": "took" })]);
        stepsEl.appendChild(li);
        steps.push({ at: now, li: li });
      }
    }
    function show(info) {
      last = info;
      statusEl.textContent = info.status;
      statusEl.className = "status status-" + info.status;
      messageEl.textContent = info.message || "";
      var p = info.progress;
      if (p === null || p === undefined) { p = info.status === "successful" ? 100 : 0; }
      progressEl.value = p;
      progressText.textContent = p + "%";
      ["started", "finished", "updated"].forEach(function (k) {
        var dd = document.getElementById("time-" + k);
        var dt = document.getElementById("label-" + k);
        if (dd && dt && info[k]) { dd.textContent = info[k]; dd.hidden = false; dt.hidden = false; }
      });
      note(info);
      dismissButton.hidden = info.status === "dismissed";
      dismissButton.textContent = ACTIVE.indexOf(info.status) >= 0 ? "Stop (dismiss)" : "Dismiss (delete results)";
    }
    function finish(info) {
      document.body.setAttribute("data-job-ended", info.status);
      var links = document.getElementById("job-links");
      links.innerHTML = "";
      (info.links || []).forEach(function (l) {
        var href = l.href + (/\/results$/.test(l.href) ? "?f=html" : "");
        links.appendChild(el("li", {}, [el("a", { href: href, rel: l.rel, text: l.title })]));
      });
      if (info.status === "successful") { O.showResults(url, opts); }
      if (info.status === "failed") {
        O.fetch(url + "/results").then(function (r) { return r.json(); }).then(function (e) {
          var box = document.getElementById("failure");
          box.hidden = false; box.textContent = e.detail || e.title || JSON.stringify(e);
        }).catch(function () {});
      }
      if ((info.links || []).some(function (l) { return /\/logs$/.test(l.href); })) { O.showLog(url + "/logs"); }
    }
    function poll() {
      var headers = etag ? { "If-None-Match": etag } : {};
      O.fetch(url, { headers: headers, cache: "no-store" }).then(function (resp) {
        if (resp.status === 304) { return null; }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        etag = resp.headers.get("ETag");
        return resp.json();
      }).then(function (info) {
        if (info) {
          show(info);
          if ((info.links || []).some(function (l) { return /\/logs$/.test(l.href); }) && ACTIVE.indexOf(info.status) >= 0) {
            O.showLog(url + "/logs");  // the log so far, kept at each step's end
          }
        }
        var current = info || last;
        if (ACTIVE.indexOf(current.status) >= 0) {
          setTimeout(poll, Date.now() - started < 10000 ? 500 : 1000);
        } else { finish(current); }
      }).catch(function () { setTimeout(poll, 3000); });
    }
    dismissButton.addEventListener("click", function () {
      var active = ACTIVE.indexOf(last.status) >= 0;
      if (!confirm(active ? "Stop this job?" : "Dismiss this job and delete its results?")) { return; }
      dismissButton.disabled = true;
      O.fetch(url, { method: "DELETE" }).then(function (resp) { return resp.json().then(function (d) { return [resp, d]; }); })
        .then(function (rd) {
          dismissButton.disabled = false;
          if (!rd[0].ok) { alert("HTTP " + rd[0].status + ": " + (rd[1].detail || "")); return; }
          show(rd[1]); etag = null;
          if (ACTIVE.indexOf(rd[1].status) < 0) { finish(rd[1]); }
        });
    });
    show(last);
    if (ACTIVE.indexOf(last.status) >= 0) { poll(); } else { finish(last); }
  };

  /** The log's last lines (fetched again only when it changed: its ETag). */
  var logTag = null;
  O.showLog = function (logUrl) {
    var box = document.getElementById("log");
    var headers = { "Accept": "text/plain" };
    if (logTag) { headers["If-None-Match"] = logTag; }
    O.fetch(logUrl, { headers: headers, cache: "no-store" }).then(function (r) {
      if (!r.ok) { return null; }  // a 304 too: what is shown is the latest
      logTag = r.headers.get("ETag");
      return r.text();
    }).then(function (text) {
      if (!text) { return; }
      box.hidden = false;
      var pre = box.querySelector("pre");
      pre.textContent = text.split("\n").slice(-200).join("\n");
      pre.scrollTop = pre.scrollHeight;
      O.stepTimings(document.getElementById("step-timings"), text);
    }).catch(function () {});
  };

  /** Each tool run of a CWL log (cwltool's "[job NAME] ..." lines): when it started, how it ended, how long
      it took. */
  O.parseSteps = function (text) {
    var re = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d),(\d{3}) \w+ \[job ([^\]]+)\] ?(.*)$/;
    var steps = {}, order = [];
    text.split("\n").forEach(function (line) {
      var m = re.exec(line);
      if (!m) { return; }
      var at = Date.parse(m[1] + "T" + m[2] + "." + m[3] + "Z");
      var name = m[4];
      if (!steps[name]) { steps[name] = { name: name, start: at, end: null, status: "running" }; order.push(name); }
      var done = /^completed (\w+)/.exec(m[5]);
      if (done) { steps[name].end = at; steps[name].status = done[1] === "success" ? "ok" : done[1]; }
    });
    return order.map(function (n) { return steps[n]; });
  };

  O.stepTimings = function (table, text) {
    if (!table) { return; }
    var steps = O.parseSteps(text);
    if (!steps.length) { return; }
    table.hidden = false;
    var tbody = table.querySelector("tbody");
    tbody.innerHTML = "";
    steps.forEach(function (s) {
      tbody.appendChild(el("tr", { "class": "step-" + s.status }, [el("td", {}, [el("code", { text: s.name })]),
        el("td", { text: s.status }), el("td", { text: s.end !== null ? ((s.end - s.start) / 1000).toFixed(2) + " s" : "" })]));
    });
  };

  /** The titiler viewer of a GeoTIFF asset (OGCFLOW_TITILER_URL), when the server names one; else null. */
  function titilerHref(asset, href) {
    var base = document.body.getAttribute("data-titiler");
    if (!base || !/image\/tiff/.test(asset.type || "") || !/^https?:/.test(href || "")) { return null; }
    var url = encodeURIComponent(href);
    return base.indexOf("{url}") >= 0 ? base.split("{url}").join(url) : base.replace(/\/$/, "") + "/cog/viewer?url=" + url;
  }

  function renderValue(v, key, opts) {
    var binary = v && typeof v === "object" && v.value !== undefined && v.mediaType &&
      !/^(text\/|application\/(geo\+)?json)/.test(v.mediaType);
    if (binary && opts.jobUrl) {
      return el("span", {}, [el("a", { href: opts.jobUrl + "/results/" + encodeURIComponent(key), "class": "download",
                                       text: "download" }), " ", el("small", { text: v.mediaType })]);
    }
    if (v && typeof v === "object" && v.href) {
      return el("span", {}, [el("a", { href: v.href, text: v.href }), " ", el("small", { text: v.type || "" })]);
    }
    var inner = v && typeof v === "object" && v.value !== undefined ? v.value : v;
    if (inner && typeof inner === "object" && inner.type === "FeatureCollection") {
      var ul = el("ul", { "class": "stac-items" });
      (inner.features || []).forEach(function (f) {
        var assets = f.assets || {};
        ul.appendChild(el("li", {}, [el("code", { text: f.id }), " ", el("small", { text: (f.properties || {}).datetime || "" }), " "].concat(
          Object.keys(assets).reduce(function (out, k) {
            var href = assets[k].__browser || assets[k].href;
            out.push(el("a", { href: href, "class": "asset", title: assets[k].href, text: k + " " }));
            var view = titilerHref(assets[k], href);
            if (view) { out.push(el("a", { href: view, "class": "titiler", target: "_blank", text: "(view) " })); }
            return out;
          }, []))));
      });
      return ul;
    }
    if (typeof inner === "string") { return el("span", { "class": "value", text: inner }); }
    return el("pre", { text: JSON.stringify(inner, null, 2) });
  }

  /** The results of the job at ``jobUrl`` (document), rendered, and the map of their STAC items. */
  O.showResults = function (jobUrl, opts) {
    var box = document.getElementById("job-results");
    var doc = opts.results;
    var got = doc ? Promise.resolve(doc) : O.fetch(jobUrl + "/results").then(function (r) { return r.ok ? r.json() : {}; });
    var files = opts.files ? Promise.resolve(opts.files) : O.fetch(jobUrl + "/files").then(function (r) {
      return r.ok ? r.json() : { files: [] };
    }).then(function (d) { return O.fileMap(d.files || []); });
    Promise.all([got, files]).then(function (both) {
      O.renderResults(box, both[0], Object.assign({}, opts, { files: both[1], jobUrl: jobUrl }));
    });
  };

  /** Storage URL of each file of a job -> where the API serves it. */
  O.fileMap = function (rows) {
    var out = {};
    rows.forEach(function (f) { out[f.url] = f.href; });
    return out;
  };

  O.renderResults = function (box, doc, opts) {
    var files = opts.files || {};
    box.hidden = false;
    var tbody = box.querySelector("tbody");
    tbody.innerHTML = "";
    var mapDiv = box.querySelector(".map");
    O.itemsOf(doc).then(function (items) {
      items.forEach(function (item) {
        var assets = item.assets || {};
        Object.keys(assets).forEach(function (k) { assets[k].__browser = browserHref(assets[k], item, files) || assets[k].href; });
      });
      Object.keys(doc).forEach(function (k) {
        tbody.appendChild(el("tr", {}, [el("td", {}, [el("code", { text: k })]), el("td", {}, [renderValue(doc[k], k, opts)])]));
      });
      if (items.length && window.L && mapDiv) { O.itemsMap(mapDiv, items, opts.aoi, files); }
      box.setAttribute("data-items", String(items.length));
      document.body.setAttribute("data-results-shown", "true");
    });
  };
})();
