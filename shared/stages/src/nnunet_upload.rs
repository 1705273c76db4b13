//! nnU-Net trained-model folders uploaded as they are, in the original project's artifact
//! layout: `models/<id>/<Trainer>__<Plans>__<configuration>/{plans.json, dataset.json,
//! fold_<f>/checkpoint_final.pth}`. Once all three are there, the model is described by
//! `models/<id>/{plans.json, dataset.json, model.json}` (model.json last), whose checkpoint is the
//! uploaded `.pth` itself, read as it is by the infer stage; the event of `model.json` then
//! registers the model like a native one.

use crate::StageError;
use crate::ingest::{Ingested, Rejection, refuse_model_id, reject};
use statapp_nnunet::model_dir::{MODEL_JSON, encode_info};
use statapp_nnunet::results::{Which, read_results_folder};
use statapp_pipeline::{Key, ObjectStore};

/// Handles an object of `models/<id>/<folder>/`.
pub fn describe(id: &str, folder: &str, store: &dyn ObjectStore) -> Result<Ingested, StageError> {
    let name = format!("models/{id}");
    if let Some(refused) = refuse_model_id(store, id, &name)? {
        return Ok(refused);
    }
    if store.exists(&Key::new(format!("{name}/{MODEL_JSON}"))?)? {
        return Ok(Ingested::Ignored {
            key: format!("{name}/{folder}"),
        });
    }
    let prefix = format!("{name}/{folder}/");
    let keys = store.list(&prefix)?;
    let rel: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.as_str().strip_prefix(&prefix))
        .collect();
    let checkpoint = |which: Which| {
        rel.iter()
            .copied()
            .filter(|r| {
                r.starts_with("fold_") && r.ends_with(which.file()) && r.matches('/').count() == 1
            })
            .collect::<Vec<_>>()
    };
    let (which, pth) = match (checkpoint(Which::Final), checkpoint(Which::Best)) {
        (f, _) if !f.is_empty() => (Which::Final, f),
        (_, b) => (Which::Best, b),
    };
    let mut missing: Vec<String> = ["plans.json", "dataset.json"]
        .into_iter()
        .filter(|f| !rel.contains(f))
        .map(String::from)
        .collect();
    if pth.is_empty() {
        missing.push("fold_<f>/checkpoint_final.pth".into());
    }
    if !missing.is_empty() {
        return Ok(Ingested::ModelWaiting {
            model: id.to_string(),
            missing,
        });
    }
    let scratch = tempfile::tempdir()?;
    let local = scratch.path().join(folder);
    let mut needed = vec!["plans.json", "dataset.json"];
    needed.extend(pth.iter().copied());
    for r in &needed {
        let k = Key::new(format!("{prefix}{r}"))?;
        let Some(body) = store.get(&k)? else {
            return Ok(Ingested::ModelWaiting {
                model: id.to_string(),
                missing: vec![r.to_string()],
            });
        };
        let path = local.join(r);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, body)?;
    }
    let found = match read_results_folder(&local, id, None, which) {
        Ok(f) => f,
        Err(e) => {
            let reason = e
                .to_string()
                .replace(&scratch.path().display().to_string(), &name);
            return reject(
                store,
                &name,
                Rejection::new("InvalidModelFolder", &name, reason),
            );
        }
    };
    for (file, path) in [
        ("plans.json", &found.plans_file),
        ("dataset.json", &found.dataset_file),
    ] {
        store.put(&Key::new(format!("{name}/{file}"))?, &std::fs::read(path)?)?;
    }
    let key = Key::new(format!("{name}/{MODEL_JSON}"))?;
    let bytes = encode_info(std::path::Path::new(key.as_str()), &found.info).map_err(|source| {
        StageError::ModelInfo {
            model: id.to_string(),
            source,
        }
    })?;
    store.put(&key, &bytes)?;
    tracing::info!(model = id, folder, "nnU-Net model described");
    Ok(Ingested::NnunetModelDescribed {
        model: id.to_string(),
    })
}
