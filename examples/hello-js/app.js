// A wafer function in JavaScript: a `fetch` event handler that componentize-js builds into a
// standard wasi:http component.
//
// Build, deploy and call (in this folder, with `wafer up` running; NAME is the manifest's name):
//
//   wafer deploy                          # builds with componentize-js first (npm run build)
//   curl http://127.0.0.1:8080/NAME        # Hello from wafer! (GET /NAME) [javascript]
//   curl -d 'echo me' http://127.0.0.1:8080/NAME
//
// GET answers a greeting; any other method echoes the body. Each call logs one line.
// componentize-js `fetch` handlers serve one request per instance: wafer notices on the first
// reused call, replays that call on a fresh instance and switches the function to a fresh
// instance per call (reuse = 1 in wafer.toml says so up front and spares that first attempt).

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
