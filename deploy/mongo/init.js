// Run by the one-shot service mongo-init (compose.yaml) at every `docker compose up`; idempotent.
//   1. authenticates as the root user (made by mongo-1 on its first start from deploy/.env);
//   2. rs.initiate of rs0 on the first start (members mongo-1..3), then waits for a primary;
//   3. creates the services' user zeroerrand in database admin with readWrite on database
//      zeroerrand only, or resets its password and roles to these (a changed .env takes effect).
// Passwords come from the environment (deploy/.env), never from this file.

const rootUser = process.env.MONGO_ROOT_USERNAME || "root";
const rootPassword = process.env.MONGO_ROOT_PASSWORD;
const appUser = "zeroerrand";
const appPassword = process.env.ZEROERRAND_MONGO_PASSWORD;
const appDatabase = "zeroerrand"; // ZEROERRAND_DATABASE of the services (its default)
const appRoles = [{ role: "readWrite", db: appDatabase }];

if (!rootPassword || !appPassword) {
  print("MONGO_ROOT_PASSWORD and ZEROERRAND_MONGO_PASSWORD must be set in deploy/.env");
  quit(1);
}

db.getSiblingDB("admin").auth(rootUser, rootPassword);

try {
  rs.status();
  print("replica set rs0 already initiated");
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo-1:27017" },
      { _id: 1, host: "mongo-2:27017" },
      { _id: 2, host: "mongo-3:27017" },
    ],
  });
  print("replica set rs0 initiated");
}

let primary = null;
for (let i = 0; i < 120 && primary === null; i++) {
  primary = rs.status().members.find((m) => m.stateStr === "PRIMARY") || null;
  if (primary === null) sleep(1000);
}
if (primary === null) {
  print("no primary after 120 s");
  quit(1);
}
print("primary: " + primary.name);

// users are written on the primary
const admin = new Mongo("mongodb://" + primary.name + "/?directConnection=true").getDB("admin");
admin.auth(rootUser, rootPassword);
if (admin.getUser(appUser) === null) {
  admin.createUser({ user: appUser, pwd: appPassword, roles: appRoles });
  print("user " + appUser + " created: readWrite on " + appDatabase);
} else {
  admin.updateUser(appUser, { pwd: appPassword, roles: appRoles });
  print("user " + appUser + " updated: readWrite on " + appDatabase);
}
quit(0);
