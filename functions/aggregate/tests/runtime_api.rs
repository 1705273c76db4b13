#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `statapp-aggregate` binary as Lambda runs it: a minimal Lambda Runtime API (the two calls
//! `lambda_runtime` makes: next invocation, response) serves the example SQS event plus a poison
//! record; the function talks to moto's S3/SQS (STATAPP_TEST_ENDPOINT, set by tools/test.sh). The
//! response must name exactly the poison record, the merge must have written the combined CSV,
//! and every log line must be JSON carrying the function and message id.

use statapp_e2e::Harness;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Reads one HTTP/1.1 request: (request line, body).
fn read_request(stream: &mut std::net::TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (line.trim().to_string(), body)
}

fn respond(
    stream: &mut std::net::TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
}

#[test]
fn the_binary_answers_a_real_sqs_event_with_its_partial_batch_failures() {
    let h = Harness::new("fnagg", Duration::from_secs(60), 3);
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/merge-jobs.json"),
    )
    .unwrap();
    let mut event: serde_json::Value = serde_json::from_str(&example).unwrap();
    let mut poison = event["Records"][0].clone();
    poison["messageId"] = "poison-0001".into();
    poison["body"] = "{\"version\":1,\"kind\":\"no-such-job\"}".into();
    event["Records"].as_array_mut().unwrap().push(poison);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_statapp-aggregate"))
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "statapp-aggregate")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_LEVEL", "info")
        .env("STATAPP_BUCKET", &h.config.bucket)
        .env("STATAPP_QUEUE_PREFIX", &h.config.queue_prefix)
        .env("AWS_ENDPOINT_URL", statapp_e2e::endpoint())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 120_000;
    let mut served = false;
    let response = loop {
        let (mut stream, _) = listener.accept().unwrap();
        let (line, body) = read_request(&mut stream);
        if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            assert!(
                !served,
                "the function asked for a second event before answering"
            );
            served = true;
            respond(
                &mut stream,
                "200 OK",
                &[
                    ("content-type", "application/json".into()),
                    ("lambda-runtime-aws-request-id", "req-0001".into()),
                    ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:statapp-aggregate".into(),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793".into(),
                    ),
                ],
                event.to_string().as_bytes(),
            );
        } else if line.starts_with("POST /2018-06-01/runtime/invocation/req-0001/response") {
            respond(&mut stream, "202 Accepted", &[], b"{}");
            break serde_json::from_slice::<serde_json::Value>(&body).unwrap();
        } else {
            panic!(
                "unexpected runtime API call {line}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    };
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();

    assert_eq!(
        response,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "poison-0001"}]})
    );
    let combined = h
        .runtime
        .block_on(
            h.aws
                .s3
                .get_object()
                .bucket(&h.config.bucket)
                .key("metrics/combined.csv")
                .send(),
        )
        .unwrap();
    let text = h
        .runtime
        .block_on(combined.body.collect())
        .unwrap()
        .into_bytes();
    assert!(
        text.starts_with(b"Patient_ID,CT,"),
        "{:?}",
        String::from_utf8_lossy(&text)
    );

    let logs = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "message failed")
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(failed["span"]["message_id"], "poison-0001", "{failed}");
    assert_eq!(failed["span"]["function"], "aggregate");
    assert_eq!(failed["level"], "ERROR");
    assert!(
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == "message done")
            .count()
            >= 2
    );
}
