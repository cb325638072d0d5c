// The static widget manager calls MathJax 2's MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])
// to typeset widget labels; MathJax 3 has no Hub. Deferred right after MathJax itself, this runs
// once MathJax 3 has replaced its configuration object and before the widgets render on "load".
(function () {
  var mathjax = window.MathJax;
  if (!mathjax || mathjax.Hub) {
    return;
  }
  mathjax.Hub = {
    Queue: function (job) {
      var element = job && job[2];
      if (element && mathjax.typesetPromise) {
        mathjax.typesetPromise([element]).catch(function () {});
      }
    },
  };
})();
