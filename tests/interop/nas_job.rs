//! A minimal JSON-RPC client of the simulator for the compose tests: log in, run app jobs, read how they end. Shared
//! by tests/it/compose.rs (a fake Compose) and tests/interop/real_compose.rs (the real one); it speaks raw frames so
//! that the project's own TrueNAS client is not what is being trusted.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use truenas_mcp::sim::{SimOptions, SimServer, Simulator};
use tungstenite::{Message, WebSocket};

pub struct NasJobs {
    _server: SimServer,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl NasJobs {
    /// A simulator with `opts` (fast job steps), logged in and subscribed to job events.
    pub fn start(opts: SimOptions) -> NasJobs {
        let sim = Simulator::new(SimOptions { job_step: Duration::from_millis(2), seed_example_apps: false, ..opts });
        let server = sim.serve("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{}/api/current", server.addr), tcp).unwrap();
        let mut nas = NasJobs { _server: server, ws, next_id: 0, events: Vec::new() };
        let login = nas.call(
            "auth.login_ex",
            json!([{"mechanism": "PASSWORD_PLAIN", "username": "mcp-service", "password": "mock-password"}]),
        );
        assert_eq!(login["result"]["response_type"], "SUCCESS", "{login}");
        nas.call("core.subscribe", json!(["core.get_jobs"]));
        nas
    }

    fn read(&mut self) -> Value {
        loop {
            if let Message::Text(t) = self.ws.read().expect("read") {
                return serde_json::from_str(&t).unwrap();
            }
        }
    }

    /// The response envelope of one call (events met on the way are kept).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.ws.send(Message::Text(request.to_string())).unwrap();
        loop {
            let m = self.read();
            if m["id"] == id {
                return m;
            }
            self.events.push(m);
        }
    }

    /// Run a job method to its end: the job's final `core.get_jobs` fields.
    pub fn job(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        let id = r["result"].as_i64().unwrap_or_else(|| panic!("{method} started no job: {r}"));
        let mut seen = std::mem::take(&mut self.events).into_iter();
        loop {
            let m = seen.next().unwrap_or_else(|| self.read());
            let f = &m["params"]["fields"];
            if m["params"]["collection"] == "core.get_jobs"
                && m["params"]["id"] == id
                && ["SUCCESS", "FAILED", "ABORTED"].contains(&f["state"].as_str().unwrap_or(""))
            {
                return f.clone();
            }
        }
    }

    /// `app.create` of a custom app from compose text.
    pub fn create(&mut self, app: &str, compose: &str) -> Value {
        self.job("app.create", json!([{"app_name": app, "custom_app": true, "custom_compose_config_string": compose}]))
    }
}
