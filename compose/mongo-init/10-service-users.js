// One MongoDB user per Lotline service, allowed to read and write its own database only.
// The mongo image runs this once, as the root user, when it initialises an empty volume;
// the passwords come from the container's environment (see .env.example).
const services = [
  { user: "catalog", db: "catalog", passwordVar: "CATALOG_DB_PASSWORD" },
  { user: "stock", db: "stock", passwordVar: "STOCK_DB_PASSWORD" },
  { user: "serial-registry", db: "serials", passwordVar: "SERIALS_DB_PASSWORD" },
  { user: "recall", db: "recall", passwordVar: "RECALL_DB_PASSWORD" },
];

for (const { user, db: name, passwordVar } of services) {
  const password = process.env[passwordVar];
  if (!password) {
    throw new Error(`${passwordVar} is not set: the ${user} service would have no database user`);
  }
  db.getSiblingDB(name).createUser({
    user,
    pwd: password,
    roles: [{ role: "readWrite", db: name }],
  });
  print(`created user ${user} with readWrite on ${name}`);
}
