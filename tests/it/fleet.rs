//! Integration tests: several NAS from one server (a fleet file). The real binary, over MCP on its stdin/stdout,
//! against two simulators of different releases served in-process over loopback WebSocket.
//! Run with `cargo test --test it fleet::`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use truenas_mcp::sim::{SimServer, SimVersion, Simulator};

use super::support::{binary, tempdir, McpPeer};
use super::truenas::{options, serve, PASSWORD};

const COMPOSE: &str = "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"18082:80\"\n";

/// Two NAS: `main` (25.10, writable, the default) and `backup` (24.10, read-only), in a fleet file next to their
/// password files.
struct Two {
    main: (Simulator, SimServer),
    backup: (Simulator, Option<SimServer>),
    dir: PathBuf,
    file: PathBuf,
}

fn two() -> Two {
    let main = serve(options(SimVersion::V25_10));
    let (backup_sim, backup_server) = serve(options(SimVersion::V24_10));
    let dir = tempdir("fleet");
    std::fs::write(dir.join("main.pw"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.join("backup.pw"), format!("{PASSWORD}\n")).unwrap();
    let file = dir.join("fleet.yaml");
    let text = format!(
        "default: main\nnas:\n  main:\n    url: ws://{}\n    password_file: main.pw\n  backup:\n    \
         url: ws://{}\n    password_file: backup.pw\n    read_only: true\n    timeout: 5\n",
        main.1.addr, backup_server.addr
    );
    std::fs::write(&file, text).unwrap();
    Two { main, backup: (backup_sim, Some(backup_server)), dir, file }
}

impl Drop for Two {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary with a clean environment plus `env`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(binary());
    c.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "error");
    c.env(truenas_mcp::clock::TEST_CLOCK_ENV, "auto");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn audit_path(t: &Two) -> PathBuf {
    t.dir.join("audit.jsonl")
}

fn server(t: &Two) -> McpPeer {
    let (file, audit) = (t.file.to_str().unwrap(), audit_path(t));
    let c = command(&[], &[("TRUENAS_CONFIG", file), ("TRUENAS_AUDIT_LOG", audit.to_str().unwrap())]);
    let mut peer = McpPeer::spawn_command(c);
    let init = peer.initialize("2025-06-18", json!({}));
    let instructions = init["instructions"].as_str().unwrap_or_default();
    assert!(instructions.contains("Several NAS: main, backup (read-only);"), "{instructions}");
    peer
}

fn call(peer: &mut McpPeer, id: i64, tool: &str, args: Value) -> (String, Option<Value>, bool) {
    let r = peer.request(json!(id), "tools/call", json!({"name": tool, "arguments": args}));
    let result = &r["result"];
    let text = result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{tool}: {r}")).to_string();
    let structured = result.get("structuredContent").cloned();
    if let Some(s) = &structured {
        let schema = &truenas_mcp::tools::output_schemas()[tool];
        let checked = truenas_mcp::jsonschema::validate(schema, s);
        assert!(checked.is_ok(), "{tool}: structuredContent does not match its output schema: {checked:?}\n{s:#}");
    }
    (text, structured, result["isError"] == json!(true))
}

fn audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn names_on(apps: &Value, nas: &str) -> Vec<String> {
    let apps = apps.as_array().unwrap();
    apps.iter().filter(|a| a["nas"] == nas).map(|a| a["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn one_server_lists_both_deploys_to_one_survives_the_other_and_refuses_the_read_only_one() {
    let mut t = two();
    let mut peer = server(&t);

    // One catalogue for both: the write tools are listed (main is writable), `nas` is one tiny argument.
    let tools = peer.request(json!(1), "tools/list", json!({}))["result"]["tools"].as_array().cloned().unwrap();
    let deploy = tools.iter().find(|t| t["name"] == "deploy_custom_app").expect("write tools listed");
    assert_eq!(deploy["inputSchema"]["properties"]["nas"], json!({"type": "string", "maxLength": 64}));

    // Lists both, grouped, each app naming its NAS.
    let (text, s, err) = call(&mut peer, 2, "list_custom_apps", json!({"nas": "*"}));
    assert!(!err, "{text}");
    assert!(text.contains("## main") && text.contains("## backup"), "{text}");
    let s = s.unwrap();
    assert!(s.get("unreachable").is_none(), "{s}");
    assert!(!names_on(&s["apps"], "main").is_empty() && !names_on(&s["apps"], "backup").is_empty(), "{s}");

    // Deploys to the default NAS only; the result and the progress name it.
    let r = peer.request(
        json!(3),
        "tools/call",
        json!({"name": "deploy_custom_app", "_meta": {"progressToken": "p"},
               "arguments": {"app_name": "web", "compose_yaml": COMPOSE}}),
    );
    let text = r["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(r["result"]["isError"] != json!(true) && text.starts_with("[nas main] "), "{r}");
    let progress: Vec<Value> =
        peer.take_backlog().into_iter().filter(|m| m["method"] == "notifications/progress").collect();
    let messages: Vec<&str> = progress.iter().filter_map(|m| m["params"]["message"].as_str()).collect();
    assert!(!messages.is_empty() && messages.iter().all(|m| m.starts_with("[nas main] ")), "{progress:?}");
    let has_web = |sim: &Simulator| sim.apps().iter().any(|a| a["name"] == "web");
    assert!(has_web(&t.main.0) && !has_web(&t.backup.0));

    // A write to the read-only backup is refused by the gate, with the NAS named, and audited as refused there.
    let (text, _, err) = call(&mut peer, 4, "stop_custom_app", json!({"nas": "backup", "app_name": "web"}));
    assert!(err && text.contains("NAS 'backup' is read-only"), "{text}");
    assert!(t.backup.0.call_log().iter().all(|(m, _)| !m.starts_with("app.stop")));
    let records = audit(&audit_path(&t));
    let host = "127.0.0.1";
    assert!(records.iter().any(|r| r["tool"] == "deploy_custom_app" && r["nas"] == format!("main ({host})")));
    let refused = records.iter().find(|r| r["tool"] == "stop_custom_app").expect("refusal audited");
    assert_eq!((refused["outcome"].as_str(), refused["nas"].as_str()), (Some("refused"), Some("backup (127.0.0.1)")));

    // Resources and completion name the NAS.
    let listed = peer.request(json!(5), "resources/list", json!({}));
    let uris: Vec<&str> =
        listed["result"]["resources"].as_array().unwrap().iter().filter_map(|r| r["uri"].as_str()).collect();
    assert_eq!(uris, ["truenas://apps?nas=main", "truenas://apps?nas=backup"]);
    let read = peer.request(json!(6), "resources/read", json!({"uri": "truenas://apps?nas=main"}));
    assert!(read["result"]["contents"][0]["text"].as_str().unwrap().contains("\"web\""), "{read}");
    let done = peer.request(
        json!(7),
        "completion/complete",
        json!({"ref": {"type": "ref/resource", "uri": "truenas://apps/{name}/logs{?nas}"},
               "argument": {"name": "nas", "value": "b"}}),
    );
    assert_eq!(done["result"]["completion"]["values"], json!(["backup"]), "{done}");

    // The backup goes down: listing everything reports it and still lists main; main keeps working.
    t.backup.1 = None;
    let (text, s, err) = call(&mut peer, 8, "list_custom_apps", json!({"nas": "*"}));
    assert!(!err, "{text}");
    let s = s.unwrap();
    assert_eq!(s["unreachable"][0]["nas"], "backup", "{s}");
    assert!(names_on(&s["apps"], "main").contains(&"web".to_string()), "{s}");
    let (text, _, err) = call(&mut peer, 9, "stop_custom_app", json!({"nas": "main", "app_name": "web"}));
    assert!(!err, "{text}");
    let (text, _, err) = call(&mut peer, 10, "list_custom_apps", json!({"nas": "nowhere"}));
    assert!(err && text == "unknown nas 'nowhere' (this server manages: main, backup)", "{text}");
    peer.assert_schema_valid();
}

fn run(c: &mut Command) -> (Output, String, String) {
    let out = c.output().expect("run truenas-mcp");
    let (o, e) = (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
    (out, o, e)
}

#[test]
fn check_and_call_take_the_fleet_and_a_nas() {
    let t = two();
    let file = t.file.to_str().unwrap();
    let audit = audit_path(&t);
    let env = [("TRUENAS_CONFIG", file), ("TRUENAS_AUDIT_LOG", audit.to_str().unwrap())];

    let (out, stdout, stderr) = run(&mut command(&["check"], &env));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("== nas main ==") && stdout.contains("== nas backup =="), "{stdout}");
    let (out, stdout, _) = run(&mut command(&["check", "--nas", "backup"], &env));
    assert!(out.status.success() && !stdout.contains("== nas main ==") && stdout.contains("24.10"), "{stdout}");

    let (out, stdout, stderr) = run(&mut command(&["call", "--nas", "backup", "list_custom_apps", "--json"], &env));
    assert!(out.status.success(), "{stdout}{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["count"].as_u64().unwrap() as usize, t.backup.0.apps().len());
    let (out, stdout, _) = run(&mut command(&["call", "--nas", "backup", "stop_custom_app", "app_name=web"], &env));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("NAS 'backup' is read-only"), "{stdout}");
}

#[test]
fn the_fleet_file_and_per_nas_variables_together_are_a_clear_error() {
    let t = two();
    let file = t.file.to_str().unwrap();
    let (out, _, stderr) = run(&mut command(&["tools"], &[("TRUENAS_CONFIG", file), ("TRUENAS_HOST", "nas.local")]));
    assert_eq!(out.status.code(), Some(2));
    let first = stderr.lines().next().unwrap_or("");
    assert!(first.contains("configuration error: TRUENAS_CONFIG and TRUENAS_HOST are both set"), "{stderr}");

    // An inline password needs a file only its owner can read.
    let inline = t.dir.join("inline.yaml");
    std::fs::write(&inline, "nas:\n  a:\n    host: nas.local\n    password: hunter2\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&inline, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (out, _, stderr) = run(&mut command(&["tools"], &[("TRUENAS_CONFIG", inline.to_str().unwrap())]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("nas 'a': an inline password needs a file only its owner can read"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    std::fs::set_permissions(&inline, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (out, _, stderr) = run(&mut command(&["tools"], &[("TRUENAS_CONFIG", inline.to_str().unwrap())]));
    assert!(out.status.success(), "{stderr}");
}

/// `tools --json` for a fleet file of `n` NAS (nothing connects).
fn catalogue_bytes(dir: &Path, n: usize) -> usize {
    let mut text = String::from("default: nas0\nnas:\n");
    for i in 0..n {
        text.push_str(&format!("  nas{i}:\n    host: 10.0.0.{i}\n"));
    }
    let file = dir.join(format!("fleet-{n}.yaml"));
    std::fs::write(&file, text).unwrap();
    let (out, stdout, stderr) = run(&mut command(&["tools", "--json"], &[("TRUENAS_CONFIG", file.to_str().unwrap())]));
    assert!(out.status.success(), "{stderr}");
    compact(&stdout)
}

/// The bytes of `tools --json` as a client receives them (one line, no indentation).
fn compact(pretty: &str) -> usize {
    serde_json::to_string(&serde_json::from_str::<Value>(pretty).unwrap()).unwrap().len()
}

#[test]
fn the_catalogue_does_not_grow_with_the_number_of_nas() {
    let dir = tempdir("fleet-catalogue");
    let single = catalogue_bytes(&dir, 1);
    let (two, three) = (catalogue_bytes(&dir, 2), catalogue_bytes(&dir, 3));
    assert_eq!(two, three, "one `nas` argument, not tools per NAS");
    // One NAS needs no choice: the catalogue is the single-NAS one; a fleet adds one small argument per tool.
    let (out, env_only, _) = run(&mut command(&["tools", "--json"], &[("TRUENAS_HOST", "nas.local")]));
    assert!(out.status.success());
    assert_eq!(single, compact(&env_only));
    // `"nas":{"type":"string","maxLength":64}` and its comma, once per tool.
    assert!(two - single <= 19 * 40, "{single} -> {two}");
    let _ = std::fs::remove_dir_all(&dir);
}
