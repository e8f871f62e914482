import './base.css';
import './across.css';
