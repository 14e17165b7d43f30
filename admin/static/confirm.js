// A form that moves money or stops work asks first: <form data-confirm="Refund 10350 IDR?">.
(function () {
  "use strict";
  // A button of its own (<button formaction=… data-confirm=…>) asks before its action only.
  Array.prototype.forEach.call(document.querySelectorAll("button[data-confirm]"), function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
}());
