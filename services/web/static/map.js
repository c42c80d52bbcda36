/* Marquee's venue map (Apache-2.0, as the project): Leaflet over the country outlines served from
   this origin (world-atlas, TopoJSON), one circle per place, sized by its number of events.
   A tile layer is added only when the deployment configures one (WEB_MAP_TILES_URL). */
(function () {
  "use strict";

  function radius(count, most) {
    return 4 + 12 * Math.sqrt(count / Math.max(most, 1));
  }

  function draw(el) {
    var data = document.getElementById("venue-points");
    var points = data ? JSON.parse(data.textContent || "[]") : [];
    var map = L.map(el, { worldCopyJump: true, minZoom: 1, maxZoom: 12, attributionControl: true });
    map.attributionControl.setPrefix(false);
    var tiles = el.dataset.tiles;
    if (tiles) {
      L.tileLayer(tiles, { attribution: el.dataset.attribution || "", maxZoom: 18 }).addTo(map);
    }
    map.setView([20, 0], 1);
    el.dataset.state = "loading";
    fetch(el.dataset.base, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("base layer " + r.status); }
        return r.json();
      })
      .then(function (world) {
        var countries = topojson.feature(world, world.objects.countries);
        L.geoJSON(countries, {
          interactive: false,
          style: {
            className: "marquee-country",
            color: "#6b7280",
            weight: 0.6,
            fillColor: tiles ? "transparent" : "#e8e4da",
            fillOpacity: tiles ? 0 : 1
          }
        }).addTo(map);
        el.dataset.countries = String(countries.features.length);
      })
      .catch(function (err) {
        el.dataset.baseError = String(err);
      })
      .then(function () {
        var most = points.reduce(function (m, p) { return Math.max(m, p.count); }, 0);
        var layer = L.featureGroup();
        points.forEach(function (p) {
          var place = (p.city || "?") + ", " + (p.country || "?");
          var text = place + ": " + p.count + (p.count === 1 ? " event" : " events");
          L.circleMarker([p.lat, p.lon], {
            className: "marquee-point",
            radius: radius(p.count, most),
            color: "#7c2d12",
            weight: 1,
            fillColor: "#ea580c",
            fillOpacity: 0.75
          }).bindTooltip(text).addTo(layer);
        });
        layer.addTo(map);
        if (points.length) {
          // The 1:110m outlines are coarse: without tiles, do not zoom in further than a region.
          map.fitBounds(layer.getBounds(), { padding: [30, 30], maxZoom: tiles ? 10 : 4, animate: false });
        }
        el.dataset.points = String(points.length);
        el.dataset.state = "ready";
      });
  }

  function start() {
    var el = document.getElementById("venue-map");
    if (el && window.L && window.topojson) {
      draw(el);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
