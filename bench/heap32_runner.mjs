// Runs one MicroPython script under MicroPython's webassembly port (wasm32: 4-byte pointers, like a board).
//
//   node bench/heap32_runner.mjs MICROPYTHON_MJS SCRIPT [--romfs IMAGE] [--copy PATH]... [--heapsize BYTES]
//
// MICROPYTHON_MJS is the npm package's micropython.mjs (bench/heap32.py installs it outside the repository).
// --romfs hands the image to the port, which keeps it outside the GC heap (as a board's flash partition) and
// mounts it at /rom; --copy writes a host file or folder into the port's in-memory filesystem at the same
// absolute path, so the script runs with the same paths as under the unix port. Exit code 1 if the script
// raised (its traceback is printed).
import fs from "node:fs";
import path from "node:path";
import process from "node:process";

const [mjs, script, ...rest] = process.argv.slice(2);
let romfs;
let heapsize = 1024 * 1024;
const copies = [];
for (let i = 0; i < rest.length; i += 2) {
  if (rest[i] === "--romfs") romfs = new Uint8Array(fs.readFileSync(rest[i + 1]));
  else if (rest[i] === "--copy") copies.push(rest[i + 1]);
  else if (rest[i] === "--heapsize") heapsize = parseInt(rest[i + 1], 10);
  else throw new Error(`unknown argument ${rest[i]}`);
}

const { loadMicroPython } = await import(mjs);
const mp = await loadMicroPython({
  heapsize,
  romfs,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stdout.write(line + "\n"),
});

function copy(host) {
  if (fs.statSync(host).isDirectory()) {
    mp.FS.mkdirTree(host);
    for (const name of fs.readdirSync(host)) copy(path.join(host, name));
  } else {
    mp.FS.mkdirTree(path.dirname(host));
    mp.FS.writeFile(host, fs.readFileSync(host));
  }
}
for (const host of copies) copy(path.resolve(host));

// One call per part between "#--step" lines: the port collects garbage only when a call returns (it cannot
// scan its own stack), so a part that ends with gc.collect() leaves the next one a collected heap to measure.
try {
  for (const part of fs.readFileSync(script, "utf8").split("\n#--step\n")) mp.runPython(part);
} catch (err) {
  process.stdout.write(String(err) + "\n");
  process.exit(1);
}
