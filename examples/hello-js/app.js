// hello-js: the hello/echo function in JavaScript, a `fetch` event handler built with
// componentize-js into a standard wasi:http component.
//
// Build, deploy and call (from the repository root, with `wafer up` running):
//
//   wafer deploy examples/hello-js          # builds with componentize-js first
//   curl http://127.0.0.1:8080/hello-js      # Hello from wafer! (GET /hello-js) [javascript]
//   curl -d 'echo me' http://127.0.0.1:8080/hello-js
//
// GET answers a greeting; any other method echoes the body. Each call logs one line.
// componentize-js `fetch` handlers serve one request per instance: wafer notices on the first
// reused call and switches the function to a fresh instance per call (or set reuse = 1).

addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const path = url.pathname + url.search;
  console.log(`${request.method} ${path}`);
  if (request.method === "GET" || request.method === "HEAD") {
    return new Response(`Hello from wafer! (${request.method} ${path}) [javascript]\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  }
  return new Response(await request.arrayBuffer(), {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
