// "Select all on this page": <input type="checkbox" class="select-all" data-form="FORM"> ticks
// (or clears) every row checkbox of that action form (<input name="ids" form="FORM">).
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("input.select-all"), function (all) {
    var form = all.getAttribute("data-form");
    var rows = function () {
      return document.querySelectorAll('input[name="ids"][form="' + form + '"]');
    };
    all.addEventListener("change", function () {
      Array.prototype.forEach.call(rows(), function (box) { box.checked = all.checked; });
    });
  });
}());
