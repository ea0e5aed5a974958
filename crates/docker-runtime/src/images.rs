//! Images by id: what one is called, what every image weighs, and removing one orun brought.
//!
//! Retention (the agent's) decides what to remove from its own record of what it pulled or
//! built; this module only answers and acts, never by a name pattern.

use std::collections::BTreeMap;

use bollard::query_parameters::RemoveImageOptions;

use crate::{Docker, RuntimeError};

/// One local image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFacts {
    /// `sha256:…`.
    pub id: String,
    /// Its tags (`name:tag`).
    pub tags: Vec<String>,
}

impl Docker {
    /// What `image` (an id or a reference) is, `None` when it is not on the host.
    ///
    /// # Errors
    /// When Docker does not answer.
    pub async fn image_facts(&self, image: &str) -> Result<Option<ImageFacts>, RuntimeError> {
        match self
            .api
            .inspect_image(image)
            .await
            .map_err(RuntimeError::from_bollard)
        {
            Ok(i) => Ok(Some(ImageFacts {
                id: i.id.unwrap_or_default(),
                tags: i.repo_tags.unwrap_or_default(),
            })),
            Err(RuntimeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The size on disk of every local image, by id, from one listing.
    ///
    /// # Errors
    /// When Docker does not answer.
    pub async fn image_sizes(&self) -> Result<BTreeMap<String, u64>, RuntimeError> {
        let listed = self
            .api
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(RuntimeError::from_bollard)?;
        Ok(listed
            .into_iter()
            .map(|i| (i.id, u64::try_from(i.size).unwrap_or(0)))
            .collect())
    }

    /// Removes `image` (an id, or a tag to untag), never forcing: an image a container
    /// still uses, or one with several names when given by id, stays and Docker says why.
    /// An image already gone is not an error.
    ///
    /// # Errors
    /// [`RuntimeError::Conflict`] when Docker refuses, or a transport error.
    pub async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        match self
            .api
            .remove_image(image, Some(options), None)
            .await
            .map_err(RuntimeError::from_bollard)
        {
            Ok(_) | Err(RuntimeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
