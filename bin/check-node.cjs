// `npm install` / `npm ci` run this first (preinstall): on an old Node it stops the install
// with one line of advice instead of warnings and a failure at the first run.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 12)) {
  process.stderr.write(
    `agentgate: needs Node.js 22.12 or newer, this is ${process.versions.node}; from a clone run: ./agentgate-dev (fetches Node 24 for this project and installs with it)\n`,
  );
  process.exit(1);
}
