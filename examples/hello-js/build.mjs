// Builds hello-js.wasm with componentize-js against wafer's WIT (../../wit).
//
// componentize-js 0.23 embeds a StarlingMonkey engine whose `fetch` event handler exports
// wasi:http/incoming-handler@0.2.10, so the WIT handed to it must say 0.2.10: the build copies
// ../../wit (0.2.12) into build/wit with the package versions, and the `@since` gates of the
// few additions after 0.2.10, rewritten to 0.2.10. wafer accepts any 0.2.x.
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const wit = "build/wit";
const as0210 = (text) => text.replace(/0\.2\.1[0-2]\b/g, "0.2.10");
rmSync("build", { recursive: true, force: true });
mkdirSync(join(wit, "deps"), { recursive: true });
for (const file of readdirSync("../../wit/deps")) {
  const text = readFileSync(join("../../wit/deps", file), "utf8");
  writeFileSync(join(wit, "deps", file), as0210(text));
}
writeFileSync(join(wit, "world.wit"), as0210(readFileSync("../../wit/world.wit", "utf8")));

const { component } = await componentize({
  sourcePath: "app.js",
  witPath: wit,
  worldName: "function",
});
writeFileSync("hello-js.wasm", component);
console.log(`built hello-js.wasm (${component.length} bytes)`);
