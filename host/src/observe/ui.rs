//! The web UI: one self-contained page (HTML, CSS and JavaScript written
//! by hand, embedded in the binary; plots are SVG drawn by the page), which
//! polls the job's JSON API and redraws without a reload.

const PAGE: &str = include_str!("ui/index.html");

/// The page, for a job whose API is under `base`, passing `token` on.
pub fn page(base: &str, token: Option<&str>) -> String {
    let config = serde_json::json!({ "base": base, "token": token });
    // `</` cannot close the script element from inside a JSON string.
    let config = config.to_string().replace("</", "<\\/");
    PAGE.replace("/*WEIR_CONFIG*/{}", &config)
}
