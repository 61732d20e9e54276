// Test-only IAM evaluation runner for cloudefigo.core (never shipped: @cloud-copilot/iam-simulate
// is AGPL-3.0-or-later). Reads a JSON array of cases on stdin, each
//   {identityPolicies: [{name, policy}], resourcePolicy?, principal, action,
//    resource, accountId, context: {key: value}}
// and writes a JSON array of {result, ignoredContextKeys, errors} on stdout, one per case, where
// result is "Allowed", "ExplicitlyDenied", "ImplicitlyDenied" or "Error".
import { runSimulation } from '@cloud-copilot/iam-simulate';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = [];
for (const c of cases) {
  const simulation = {
    request: {
      principal: c.principal,
      action: c.action,
      resource: { resource: c.resource, accountId: c.accountId },
      contextVariables: c.context || {},
    },
    identityPolicies: c.identityPolicies || [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  if (c.resourcePolicy) simulation.resourcePolicy = c.resourcePolicy;
  if (c.permissionBoundaryPolicies) simulation.permissionBoundaryPolicies = c.permissionBoundaryPolicies;
  const r = await runSimulation(simulation, { simulationMode: 'Strict' });
  if (r.resultType === 'error') {
    out.push({ result: 'Error', errors: r.errors, ignoredContextKeys: [] });
  } else if (r.resultType === 'single') {
    out.push({ result: r.overallResult, ignoredContextKeys: r.result.ignoredContextKeys || [] });
  } else {
    out.push({
      result: r.overallResult,
      ignoredContextKeys: [...new Set(r.results.flatMap((x) => x.ignoredContextKeys || []))],
    });
  }
}
process.stdout.write(JSON.stringify(out));
