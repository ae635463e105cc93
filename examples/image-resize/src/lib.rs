//! Resizes images: POST a PNG or JPEG, get it back `?width=N` pixels wide (aspect kept), in the
//! same format. A real compute-heavy function: decoding, Lanczos resampling, encoding.
//!
//! ```sh
//! wafer deploy examples/image-resize
//! curl --data-binary @photo.jpg 'http://127.0.0.1:8080/image-resize?width=320' -o small.jpg
//! ```

use std::io::Cursor;

use image::{ImageFormat, imageops::FilterType};
use wafer_sdk::{Error, IntoResponse, Method, Request, RequestExt, Response, StatusCode, http};

const MAX_WIDTH: u32 = 4096;

async fn handle(mut request: Request) -> Result<Response, Error> {
    if request.method() != Method::POST {
        return Err(Error::method_not_allowed("POST a PNG or JPEG image"));
    }
    let width: u32 = match request.query("width") {
        Some(w) => w
            .parse()
            .ok()
            .filter(|w| (1..=MAX_WIDTH).contains(w))
            .ok_or_else(|| Error::bad_request(format!("width must be 1 to {MAX_WIDTH}")))?,
        None => return Err(Error::bad_request("give the new width: ?width=N")),
    };
    let bytes = request.bytes().await?;
    let format = image::guess_format(&bytes)
        .ok()
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg))
        .ok_or_else(|| {
            Error::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send a PNG or JPEG image",
            )
        })?;
    let image = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| Error::bad_request(format!("cannot decode the image: {e}")))?;
    let height =
        ((image.height() as u64 * width as u64) / image.width().max(1) as u64).max(1) as u32;
    let resized = image.resize_exact(width, height, FilterType::Lanczos3);
    let mut out = Cursor::new(Vec::new());
    let (content_type, resized) = match format {
        ImageFormat::Jpeg => (
            "image/jpeg",
            image::DynamicImage::ImageRgb8(resized.to_rgb8()),
        ),
        _ => ("image/png", resized),
    };
    resized
        .write_to(&mut out, format)
        .map_err(|e| Error::internal(format!("cannot encode the image: {e}")))?;
    println!(
        "resized {}x{} to {width}x{height}",
        image.width(),
        image.height()
    );
    let mut response = out.into_inner().into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

wafer_sdk::export!(handle);
